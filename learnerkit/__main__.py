from learnerkit.cli import main

raise SystemExit(main())
