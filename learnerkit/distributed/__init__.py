"""Old paths only (issue 19): Ray distribution lives in the internal ``learnerkit._distributed``
since 0.2. What is left here are the shims of modules renamed before then, which warn and go
in 0.3."""
