"""The README's Python examples run as written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).parent.parent / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_the_embedding_example_trains_and_checkpoints(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    embedding = next(b for b in _python_blocks() if "LearnerGroup(spec)" in b)
    exec(compile(embedding, "README.md", "exec"), {})
    assert (tmp_path / "ckpt" / "learner_state.npz").is_file()


def _code_lines(source: str) -> list[str]:
    """Lines of code, without docstrings, blank lines or ``from __future__``."""
    source = re.sub(r'"""(.*?)"""', "", source, flags=re.S)
    return [ln for ln in source.splitlines() if ln.strip() and "__future__" not in ln]


def test_the_plugin_example_is_the_bc_plugin_as_shipped():
    plugin = next(b for b in _python_blocks() if "def compute_loss" in b)
    shipped = (Path(__file__).parent.parent / "plugins/bc/learnerkit_bc/__init__.py").read_text()
    assert _code_lines(plugin) == _code_lines(shipped)


def test_the_loop_example_is_the_fullbatch_package_the_tests_train():
    # tests/test_loop_plugins.py installs and trains that package with `learnerkit train`.
    shipped = Path(__file__).parent / "plugin_packages/learnerkit-fullbatch"
    blocks = _python_blocks()
    for marker, name in (("= LoopInfo(", "__init__.py"), ("class FullBatchLoop", "loop.py")):
        block = next(b for b in blocks if marker in b)
        source = (shipped / "learnerkit_fullbatch" / name).read_text()
        assert _code_lines(block) == _code_lines(source), name
    toml = re.search(
        r"```toml\n(\[project.entry-points.\"learnerkit.training_loops.*?)```",
        README.read_text(),
        re.S,
    ).group(1)
    pyproject = (shipped / "pyproject.toml").read_text()
    for line in toml.splitlines():
        assert line.split("#")[0].strip() in pyproject, line
