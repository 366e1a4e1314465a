"""Readers audit the code: every module and every public function or class in j1_min/ says what it is for."""
from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "j1_min"


def public_defs(tree: ast.Module):
    """Module-level functions and classes, and the methods of public classes, whose names do not start with _."""
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
        missing += [f"{f.name}: {name}" for name, node in public_defs(tree) if not ast.get_docstring(node)]
    assert not missing, "no docstring: " + ", ".join(missing)
