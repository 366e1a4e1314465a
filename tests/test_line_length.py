"""Prose is wrapped at 100 columns, as the code is (ruff keeps the code so: see .ci/run).

Tables and fenced code blocks are exempt: a table row is one line, and a command is copied as it is.
"""
from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WIDTH = 100
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")),
        *sorted(ROOT.glob("j1_min/**/README.md"))]


def long_lines(text: str) -> list[int]:
    """Line numbers of prose lines over WIDTH characters (fenced code blocks and table rows
    skipped)."""
    bad, fenced = [], False
    for n, line in enumerate(text.splitlines(), 1):
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and not line.startswith("|") and len(line) > WIDTH:
            bad.append(n)
    return bad


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_markdown_prose_is_wrapped_at_100_columns(path):
    assert long_lines(path.read_text()) == []


def test_the_check_skips_tables_and_code_but_not_prose():
    long = "x" * (WIDTH + 1)
    assert long_lines(f"| {long} |\n```\n{long}\n```\n{long}\n") == [5]
