"""The scripts, benchmarks and tools name only what j1_min has.

Benchmarks are not run by the suite (they take minutes), so a renamed or removed j1_min function
would break them silently: `bench/sampling.py` called `Transformer.from_pretrained` for a while
after it was removed. This test reads every script's source, resolves each name it imports from
j1_min, and checks every attribute it reads from one of them (`Transformer.from_pretrained`,
`S._families`, `checkpoint.load_model`) exists.
"""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted([*ROOT.glob("*.py"), *(ROOT / "bench").glob("*.py"),
                  *(ROOT / "scripts").glob("*.py")])


def imported_j1_names(tree: ast.Module) -> dict[str, object]:
    """Local name -> the j1_min module or object it is bound to, for every import of j1_min in the
    file."""
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("j1_min") and a.asname:
                    names[a.asname] = importlib.import_module(a.name)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("j1_min"):
            module = importlib.import_module(node.module)
            for a in node.names:
                names[a.asname or a.name] = (getattr(module, a.name) if hasattr(module, a.name)
                                             else importlib.import_module(
                                                 f"{node.module}.{a.name}"))
    return names


def missing_attributes(path: Path, root: Path = ROOT) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    names = imported_j1_names(tree)
    bad = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
            and node.value.id in names
                and not isinstance(node.ctx, ast.Store)
            and not hasattr(names[node.value.id], node.attr)):
            bad.append(f"{path.relative_to(root)}:{node.lineno}: {node.value.id}.{node.attr}")
    return bad


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_j1_min_name_a_script_reads_exists(path):
    assert missing_attributes(path) == []


def test_the_check_finds_a_removed_method(tmp_path):
    (tmp_path / "s.py").write_text("from j1_min.model import Transformer\nm = "
                                   "Transformer.from_pretrained('x')\n")
    assert missing_attributes(tmp_path / "s.py",
                              tmp_path) == ["s.py:2: Transformer.from_pretrained"]
