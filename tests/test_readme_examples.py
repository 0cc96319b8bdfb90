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
