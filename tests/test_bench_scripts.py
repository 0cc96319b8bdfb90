"""Every benchmark script under ``bench/`` imports, with what it takes from its neighbours:
they run by hand, not in the suite, and one that imported a helper another had since
dropped (``bench/sac_learning.py``) failed only when someone ran it."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO_ROOT

BENCH = REPO_ROOT / "bench"


def test_every_benchmark_script_imports():
    scripts = sorted(path.stem for path in BENCH.glob("*.py"))
    code = (
        "import importlib, sys\n"
        f"sys.path.insert(0, {str(BENCH)!r})\n"
        f"for name in {scripts!r}:\n"
        "    importlib.import_module(name)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(scripts) >= 10  # the glob found the scripts
