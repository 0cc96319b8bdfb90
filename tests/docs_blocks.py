"""The ```python blocks of the documentation's pages, as ``tests/test_docs_examples.py``
runs them, for the tests that run one themselves and check what it shows (a block marked
``<!-- run by: tests/FILE.py -->``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from conftest import REPO_ROOT

NOT_RUN = re.compile(r"<!-- not run: (?P<reason>\S.*?) -->")
RUN_BY = re.compile(r"<!-- run by: (?P<test>tests/\w+\.py) -->")
FENCE = re.compile(r"^```(\S*)")


def python_blocks(page: Path) -> list[tuple[int, str, str | None]]:
    """``(line, source, why the docs' test does not run it, or None)`` of each ```python
    block of ``page``: a ``not run`` reason, or ``run by tests/FILE.py``."""
    blocks, lines = [], page.read_text().splitlines()
    index = 0
    while index < len(lines):
        fence = FENCE.match(lines[index])
        if not fence:
            index += 1
            continue
        end = next(j for j in range(index + 1, len(lines)) if lines[j].startswith("```"))
        if fence.group(1) == "python":
            previous = next((ln for ln in reversed(lines[:index]) if ln.strip()), "").strip()
            not_run, run_by = NOT_RUN.fullmatch(previous), RUN_BY.fullmatch(previous)
            reason = (
                not_run.group("reason")
                if not_run
                else f"run by {run_by.group('test')}"
                if run_by
                else None
            )
            source = "\n".join(lines[index + 1 : end]) + "\n"
            blocks.append((index + 2, source, reason))
        index = end + 1
    return blocks


def run_example(page: str, containing: str) -> dict[str, Any]:
    """Run the one block of ``page`` (relative to the repository) that contains
    ``containing``, in the current directory; returns its namespace."""
    path = REPO_ROOT / page
    found = [(line, src) for line, src, _ in python_blocks(path) if containing in src]
    assert len(found) == 1, f"{page}: {len(found)} python blocks contain {containing!r}"
    line, source = found[0]
    namespace: dict[str, Any] = {"__name__": "docs_example"}
    exec(compile(source, f"{page}, line {line}", "exec"), namespace)
    return namespace
