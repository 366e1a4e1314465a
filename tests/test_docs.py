"""Readers audit the code: every module and every public function or class in j1_min/ says what it
is for."""
from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "j1_min"


def public_defs(tree: ast.Module):
    """Module-level functions and classes, and the methods of public classes, whose names do not
    start with _."""
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
            yield node.name, node
            if isinstance(node, ast.ClassDef):
                for sub in node.body:
                    if isinstance(sub, ast.FunctionDef) and not sub.name.startswith("_"):
                        yield f"{node.name}.{sub.name}", sub


def test_every_module_and_public_function_has_a_docstring():
    missing = []
    for f in sorted(PKG.glob("*.py")):
        tree = ast.parse(f.read_text())
        if not ast.get_docstring(tree):
            missing.append(f"{f.name}: module")
        missing += [f"{f.name}: {name}" for name, node in public_defs(tree)
                    if not ast.get_docstring(node)]
    assert not missing, "no docstring: " + ", ".join(missing)


ROOT = PKG.parent
sys.path.insert(0, str(ROOT / "scripts"))
from doc_anchors import definitions, doc_files, stale_links  # noqa: E402

REF = re.compile(r"`([\w./-]+\.py):([A-Za-z_][\w.]*)`")  # `j1_min/grpo.py:grpo_loss`, linked or not


def test_every_code_reference_in_the_docs_resolves_and_its_line_anchor_is_current():
    bad = []
    for doc in doc_files():
        for file, name in REF.findall(doc.read_text()):
            path = ROOT / file
            if not path.is_file():
                bad.append(f"{doc.name}: {file} does not exist")
            elif name not in definitions(path):
                bad.append(f"{doc.name}: {file} defines no {name}")
        bad += stale_links(doc)[1]
    assert not bad, "\n".join(
        bad) + "\n(python scripts/doc_anchors.py sets every anchor to today's line)"


def test_readme_layout_table_states_each_files_size_in_lines():
    rows = re.findall(r"^\| `([\w/]+\.py)` \| (\d+) \|", (ROOT / "README.md").read_text(), re.M)
    assert len(rows) >= 10
    # within 10%, so an edit need not touch README every time, a rewrite does
    for file, lines in rows:
        actual = len((ROOT / file).read_text().splitlines())
        assert abs(actual - int(
            lines)) <= 0.1 * actual, f"README says {file} has {lines} lines; it has {actual}"


def test_nothing_cites_a_document_outside_the_repository():
    """Code, tests, scripts and docs stand on their own: nothing points at the team's design notes
    or their numbered pitfalls, which are not part of the project (the reason is written where it is
    needed instead)."""
    outside = re.compile(r"\bDESIGN\b|\bpitfall\s*\d|\.\./shared\b")
    files = [p for p in ROOT.rglob("*") if p.suffix in (".py", ".md", ".sh", ".toml", ".json")
             and not any(part.startswith(".") or part in ("runs", "build")
                         for part in p.relative_to(ROOT).parts)]
    bad = [f"{p.relative_to(ROOT)}:{i}: {line.strip()}" for p in files if p != Path(__file__)
           for i, line in enumerate(p.read_text(errors="replace").splitlines(), 1)
           if outside.search(line)]
    assert len(files) > 40 and not bad, "\n".join(bad)
