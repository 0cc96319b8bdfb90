"""``learnerkit new-plugin NAME --loop LOOP`` (issue 19, section 2) writes an installable
plugin package that passes its own tests: checked in-process for each loop (the package
imports, registers, and declares the loop and its settings), and end to end in a slow test
(pip-installed into temporary targets side by side, listed by ``learnerkit list-plugins``,
its generated tests run green)."""

from __future__ import annotations

import ast
import contextlib
import importlib
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import pip_install, run_learnerkit

import learnerkit
from learnerkit.cli import main

LOOPS = ["on_policy", "async", "offline", "replay"]
SETTINGS = {
    "on_policy": learnerkit.OnPolicySettings,
    "async": learnerkit.AsyncSettings,
    "offline": learnerkit.OfflineSettings,
    "replay": learnerkit.ReplaySettings,
}


def new_plugin(name: str, loop: str, directory: Path) -> tuple[int, str, str]:
    """``learnerkit new-plugin NAME --loop LOOP --dir DIRECTORY`` in-process: the status, the
    output and the error output."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(["new-plugin", name, "--loop", loop, "--dir", str(directory)])
    return status, out.getvalue(), err.getvalue()


def write_plugin(name: str, loop: str, directory: Path) -> Path:
    """The package ``learnerkit new-plugin`` wrote, where its output says it did."""
    status, out, err = new_plugin(name, loop, directory)
    assert status == 0, err
    return Path(re.match(r"wrote (.+)/ \(algorithm", out).group(1))


def refusal(name: str, loop: str, directory: Path) -> str:
    status, _, err = new_plugin(name, loop, directory)
    assert status == 2 and err.startswith("learnerkit: error: "), (status, err)
    return err


@pytest.mark.parametrize("loop", LOOPS)
def test_the_written_package_registers_on_its_loops_settings(tmp_path, monkeypatch, loop):
    name = f"mine_{loop}"
    root = write_plugin(name, loop, tmp_path)
    assert root.name == f"learnerkit-mine-{loop.replace('_', '-')}"
    assert {p.name for p in root.iterdir()} == {
        "pyproject.toml",
        "README.md",
        "tests",
        root.name.replace("-", "_"),
    }
    pyproject = (root / "pyproject.toml").read_text()
    assert (
        f'[project.entry-points."learnerkit.algorithms"]\n{name} = "learnerkit_{name}"' in pyproject
    )
    monkeypatch.syspath_prepend(str(root))
    module = importlib.import_module(f"learnerkit_{name}")
    algorithm = learnerkit.register_algorithm(module)
    assert algorithm.training_loop == loop and algorithm.requires_api == ">=0.2"
    assert issubclass(algorithm.hyperparameters, SETTINGS[loop])
    assert set(algorithm.plugin.__dict__) >= {"compute_loss", "configure_optimizers"}
    tests = (root / "tests" / f"test_{name}.py").read_text()
    assert "AlgorithmContract" in tests and f'algorithm = "{name}"' in tests
    for path in root.rglob("*.py"):
        ast.parse(path.read_text(), str(path))


def test_the_command_writes_the_package_and_says_what_to_do_next(tmp_path):
    proc = run_learnerkit("-m", "learnerkit", "new-plugin", "a2c", "--dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "learnerkit-a2c" / "learnerkit_a2c" / "__init__.py").is_file()
    assert "pip install -e" in proc.stdout and "algorithm 'a2c'" in proc.stdout
    source = (tmp_path / "learnerkit-a2c" / "learnerkit_a2c" / "__init__.py").read_text()
    assert 'training_loop="on_policy"' in source  # the default


@pytest.mark.parametrize(
    ("name", "loop", "message"),
    [
        ("A2C", "on_policy", "lower-case Python identifier"),
        ("2ppo", "on_policy", "lower-case Python identifier"),
        ("a2c", "sync", r"--loop must name an installed training loop .*'on_policy'.*'sync'"),
        # Its package, learnerkit-ppo, would have replaced the built-in one when installed.
        (
            "ppo",
            "on_policy",
            r"an installed plugin is called 'ppo' already \(package learnerkit-ppo\)",
        ),
    ],
)
def test_a_bad_name_or_loop_is_refused_with_what_is_allowed(tmp_path, name, loop, message):
    assert re.search(message, refusal(name, loop, tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_every_builtin_loop_has_a_template():
    offered = re.search(r"one of (\[.*?\])", refusal("a2c", "sync", Path("."))).group(1)
    assert set(ast.literal_eval(offered)) >= set(LOOPS)


def test_an_existing_package_directory_is_never_overwritten(tmp_path):
    write_plugin("a2c", "on_policy", tmp_path)
    assert "exists; remove it or pick another" in refusal("a2c", "async", tmp_path)


@pytest.mark.slow
def test_each_loops_package_installs_lists_and_passes_its_own_tests(tmp_path):
    roots = {loop: write_plugin(f"gen_{loop}", loop, tmp_path / "src") for loop in LOOPS}
    targets = {loop: tmp_path / "site" / loop for loop in LOOPS}
    # Side by side, as conftest's plugin_dirs installs tests/plugin_packages.
    installs = {loop: pip_install(roots[loop], targets[loop], tmp_path / "build") for loop in LOOPS}
    for loop, proc in installs.items():
        output, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"pip could not install the {loop} package:\n{output}"
    rows = json.loads(
        run_learnerkit(
            "-m", "learnerkit", "list-plugins", "--json", plugin_dirs=targets.values()
        ).stdout
    )
    listed = {row["name"]: row for row in rows if row["kind"] == "algorithm"}
    for loop in LOOPS:
        row = listed[f"gen_{loop}"]
        assert row["status"] == "ok" and row["training_loop"] == loop, row
    # The generated tests, in one interpreter (one TensorFlow import), on torch: TensorFlow
    # runs of the same kit are test_builtin_plugins_contract.py's.
    environ = dict(os.environ)
    environ["PYTHONPATH"] = os.pathsep.join(
        [*map(str, targets.values()), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "not tf"]
        + [str(roots[loop] / "tests") for loop in LOOPS],
        capture_output=True,
        text=True,
        env=environ,
        cwd=tmp_path,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "failed" not in proc.stdout
