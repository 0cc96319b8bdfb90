"""Every ```python block of the documentation (``docs/**/*.md`` and ``README.md``) runs, so
the docs cannot drift from the code (issue 25).

A page's blocks run in order in one namespace, as a reader would paste them, in a fresh
working directory with a fresh plugin registry. A block that is deliberately not runnable
(a fragment of a larger file, an example needing a game the reader writes) is preceded by
the line ``<!-- not run: REASON -->``; those stay rare and each says why. A training example
that a learning test runs and checks (rather than train the same run twice) is preceded by
``<!-- run by: tests/FILE.py -->``, and that file names the page. The site's navigation
lists every public module's reference page, and the README links every written page.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import REPO_ROOT
from docs_blocks import NOT_RUN, RUN_BY, python_blocks

from learnerkit.api import PUBLIC_MODULES

DOCS = REPO_ROOT / "docs"
# A page whose examples train for seconds (slow) or start Ray (ray): `<!-- examples: slow, ray -->`.
PAGE_MARKS = re.compile(r"^<!-- examples: (?P<marks>[a-z, ]+) -->$", re.MULTILINE)
KNOWN_MARKS = {"slow", "ray"}
MOST_NOT_RUN = 5  # "rare": every page together


def pages() -> list[Path]:
    return [REPO_ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def relative(page: Path) -> str:
    return str(page.relative_to(REPO_ROOT))


def page_params() -> list:
    params = []
    for page in pages():
        if any(reason is None for _, _, reason in python_blocks(page)):
            found = PAGE_MARKS.search(page.read_text())
            names = {n.strip() for n in found.group("marks").split(",")} if found else set()
            assert names <= KNOWN_MARKS, f"{relative(page)}: unknown marks {names - KNOWN_MARKS}"
            marks = [getattr(pytest.mark, name) for name in sorted(names)]
            params.append(pytest.param(page, id=relative(page), marks=marks))
    return params


@pytest.mark.parametrize("page", page_params())
def test_the_python_examples_of_the_page_run_in_order(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "docs_example"}
    for line, source, reason in python_blocks(page):
        if reason is None:
            exec(compile(source, f"{relative(page)}, line {line}", "exec"), namespace)


def test_blocks_left_unrun_say_why_and_stay_rare():
    unrun = [
        (relative(page), line)
        for page in pages()
        for line, _, reason in python_blocks(page)
        if reason is not None and not reason.startswith("run by ")
    ]
    assert len(unrun) <= MOST_NOT_RUN, unrun
    # A "not run" or "run by" line must sit right above a python block, or it marks nothing.
    for page in pages():
        lines = page.read_text().splitlines()
        for number, text in enumerate(lines):
            if NOT_RUN.fullmatch(text.strip()) or RUN_BY.fullmatch(text.strip()):
                following = next(ln for ln in lines[number + 1 :] if ln.strip())
                assert following.startswith("```python"), f"{relative(page)}:{number + 1}"


def test_blocks_run_by_a_test_are_run_there():
    for page in pages():
        for line, _, reason in python_blocks(page):
            if reason is not None and reason.startswith("run by "):
                test_file = REPO_ROOT / reason.removeprefix("run by ")
                assert test_file.is_file(), f"{relative(page)}:{line}: no {test_file}"
                assert relative(page) in test_file.read_text(), (
                    f"{relative(page)}:{line}: {test_file.name} never names the page"
                )


def test_the_collector_finds_blocks_and_reasons(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "text\n\n```python\nx = 1\n```\n\n<!-- not run: a fragment -->\n```python\nreturn x\n```\n"
        "\n```bash\nls\n```\n\n<!-- run by: tests/test_x.py -->\n```python\ny = 2\n```\n"
    )
    assert python_blocks(page) == [
        (4, "x = 1\n", None),
        (9, "return x\n", "a fragment"),
        (18, "y = 2\n", "run by tests/test_x.py"),
    ]


def test_the_site_navigation_lists_every_public_module():
    nav = (REPO_ROOT / "mkdocs.yml").read_text()
    listed = set(re.findall(r"reference/api/(learnerkit[\w.]*)\.md", nav))
    assert listed == set(PUBLIC_MODULES)


def test_the_readme_links_every_page_of_the_site():
    linked = set(re.findall(r"\]\((docs/[\w./-]+\.md)\)", (REPO_ROOT / "README.md").read_text()))
    written = {relative(page) for page in DOCS.rglob("*.md") if "reference" not in page.parts}
    assert written - linked == set(), "pages the README's Documentation list leaves out"
