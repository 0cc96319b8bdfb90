"""The documentation's code that mirrors shipped code stays that code: the plugin example
(README and "Writing an algorithm") is the BC plugin as shipped, the loop example is the
package the tests train, and the embedding example trains and checkpoints. (Every block
also runs: tests/test_docs_examples.py.)"""

from __future__ import annotations

import re
from pathlib import Path

from conftest import REPO_ROOT
from docs_blocks import python_blocks as blocks_of

DOCS = REPO_ROOT / "docs"


def python_blocks(page: Path) -> list[str]:
    return [source for _, source, _ in blocks_of(page)]


def _code_lines(source: str) -> list[str]:
    """Lines of code, without docstrings, blank lines or ``from __future__``."""
    source = re.sub(r'"""(.*?)"""', "", source, flags=re.S)
    return [ln for ln in source.splitlines() if ln.strip() and "__future__" not in ln]


def test_the_embedding_example_trains_and_checkpoints(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    page = DOCS / "concepts/index.md"
    embedding = next(b for b in python_blocks(page) if "LearnerGroup(spec)" in b)
    exec(compile(embedding, str(page), "exec"), {})
    assert (tmp_path / "ckpt" / "learner_state.npz").is_file()


def test_the_plugin_examples_are_the_bc_plugin_as_shipped():
    shipped = (REPO_ROOT / "plugins/bc/learnerkit_bc/__init__.py").read_text()
    for page in (REPO_ROOT / "README.md", DOCS / "writing-an-algorithm.md"):
        plugin = next(b for b in python_blocks(page) if 'name="bc"' in b)
        assert _code_lines(plugin) == _code_lines(shipped), page


def test_the_loop_example_is_the_fullbatch_package_the_tests_train():
    # tests/test_loop_plugins.py installs and trains that package with `learnerkit train`.
    page = DOCS / "writing-a-training-loop.md"
    shipped = Path(__file__).parent / "plugin_packages/learnerkit-fullbatch"
    blocks = python_blocks(page)
    for marker, name in (("= LoopInfo(", "__init__.py"), ("class FullBatchLoop", "loop.py")):
        block = next(b for b in blocks if marker in b)
        source = (shipped / "learnerkit_fullbatch" / name).read_text()
        assert _code_lines(block) == _code_lines(source), name
    toml = re.search(
        r"```toml\n(\[project.entry-points.\"learnerkit.training_loops.*?)```",
        page.read_text(),
        re.S,
    ).group(1)
    pyproject = (shipped / "pyproject.toml").read_text()
    for line in toml.splitlines():
        assert line.split("#")[0].strip() in pyproject, line
