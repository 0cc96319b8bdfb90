"""Importing learnerkit, or listing plugins, loads no torch, TensorFlow or Ray; training
with torch loads neither ``torch._dynamo`` nor sympy.

Checked with ``python -X importtime`` in a fresh interpreter: it logs every module imported.
"""

from __future__ import annotations

import json
import time

import pytest
from conftest import run_learnerkit

HEAVY = {"torch", "tensorflow", "keras", "ray", "jax"}


def imported_modules(importtime_log: str) -> set[str]:
    names = set()
    for line in importtime_log.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name != "package":  # the header line
                names.add(name)
    return names


def imported_top_level_modules(importtime_log: str) -> set[str]:
    return {name.split(".")[0] for name in imported_modules(importtime_log)}


def timed_run(*args: str, **kwargs) -> tuple[object, float]:
    start = time.perf_counter()
    proc = run_learnerkit(*args, **kwargs)
    return proc, time.perf_counter() - start


def test_list_plugins_imports_no_framework(plugin_dirs):
    proc, seconds = timed_run(
        "-X",
        "importtime",
        "-m",
        "learnerkit",
        "list-plugins",
        "--json",
        plugin_dirs=[plugin_dirs["learnerkit-echo"], plugin_dirs["learnerkit-fullbatch"]],
    )
    assert proc.returncode == 0, proc.stderr
    rows = {row["name"]: row["status"] for row in json.loads(proc.stdout)}
    assert rows["bc"] == rows["echo"] == "ok"  # the plugins' modules were imported
    assert rows["on_policy"] == rows["full_batch"] == "ok"  # and the loops' declarations
    modules = imported_top_level_modules(proc.stderr)
    assert "learnerkit" in modules
    assert not modules & HEAVY, f"list-plugins imported {sorted(modules & HEAVY)}"
    print(f"\n`learnerkit list-plugins --json` took {seconds:.2f} s (with -X importtime)")
    assert seconds < 5


def test_import_learnerkit_imports_no_framework():
    proc, seconds = timed_run("-X", "importtime", "-c", "import learnerkit")
    assert proc.returncode == 0, proc.stderr
    modules = imported_top_level_modules(proc.stderr)
    assert "learnerkit" in modules
    assert not modules & HEAVY, f"import learnerkit imported {sorted(modules & HEAVY)}"
    print(f"\n`import learnerkit` took {seconds:.2f} s (with -X importtime)")
    assert seconds < 5


def test_loading_every_plugin_leaves_no_framework_in_sys_modules(plugin_dirs):
    # importtime does not log modules loaded by importlib.import_module (entry points are),
    # so look at sys.modules too.
    code = (
        "import sys, learnerkit\n"
        "assert learnerkit.load_plugins()['echo'].name == 'echo'\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {sorted(HEAVY)!r}))\n"
    )
    proc, _ = timed_run("-c", code, plugin_dirs=[plugin_dirs["learnerkit-echo"]])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_building_a_spec_still_imports_no_framework(framework):
    # The framework is imported when a Learner is built, not when it is configured.
    code = (
        "import sys, gymnasium as gym, numpy as np, learnerkit as lk\n"
        "obs = gym.spaces.Box(-1, 1, (4,), np.float32)\n"
        f"lk.LearnerSpec(algorithm='bc', framework={framework!r},\n"
        "    module_spec=lk.ModuleSpec(obs, gym.spaces.Discrete(2)))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        f"{sorted(HEAVY)!r}))\n"
    )
    proc, _ = timed_run("-c", code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_listing_plugins_does_not_even_import_numpy(plugin_dirs):
    # The batch and Learner classes load on first use; plugin modules import only the light
    # names (Algorithm, Columns, hookimpl, LoopInfo, the settings classes), so listing stays
    # fast. A loop's code, which does import numpy, waits until it trains.
    code = (
        "import sys, learnerkit\n"
        "learnerkit.load_plugins()\n"
        "learnerkit.list_plugins()\n"
        "assert all(r.status == 'ok' for r in learnerkit.list_training_loops())\n"
        "learnerkit.get_training_loop('full_batch')\n"
        "print('numpy' in sys.modules)\n"
    )
    dirs = [plugin_dirs["learnerkit-echo"], plugin_dirs["learnerkit-fullbatch"]]
    proc, _ = timed_run("-c", code, plugin_dirs=dirs)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


@pytest.mark.slow  # a training run of a second or more
def test_torch_training_imports_neither_dynamo_nor_sympy(tmp_path):
    """torch.optim's own step wrapper imports ``torch._dynamo`` (0.8 s, ~35 MB), and a
    gradient passed to ``backward`` torch's symbolic shapes and sympy (0.3 s, ~25 MB): a
    torch training run, its updates, checkpoints and final evaluation, imports none."""
    proc = run_learnerkit(
        "-X", "importtime", "-m", "learnerkit", "train", "ppo", "--stop-timesteps", "1024",
        "--out", str(tmp_path / "run"), "--quiet",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "run" / "checkpoint").is_dir()
    modules = imported_modules(proc.stderr)
    assert "torch" in modules and "torch.optim" in modules
    assert "torch._dynamo" not in modules
    assert "torch.fx.experimental.symbolic_shapes" not in modules
    assert "sympy" not in modules
