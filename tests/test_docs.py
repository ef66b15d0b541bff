"""Every ```python block in docs/ runs: the blocks of a page, in order, as one script.

Blocks meant as illustration only are fenced as ```text.
"""

from __future__ import annotations

import gc
import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
PAGES = [
    p
    for p in [*sorted(DOCS.glob("*.md")), DOCS.parent / "README.md"]
    if BLOCK.search(p.read_text())
]


def test_there_are_pages_with_code() -> None:
    assert len(PAGES) >= 6


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_the_snippets_of_a_page_run(page: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = "\n".join(BLOCK.findall(page.read_text()))
    try:
        exec(compile(source, str(page), "exec"), {"__name__": "__docs__"})
    finally:
        gc.unfreeze()  # a page may freeze (docs/running.md); the suite's objects stay seen
    assert capsys.readouterr().out  # every page with code shows its results
