"""The code's shape: j1_min's modules import each other without a cycle, and no script or benchmark
leans on another script or on a module's private names (what they share lives in j1_min/, under a
public name)."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = "j1_min"


def imports(path: Path, package: str = PKG) -> list[tuple[str, list[str]]]:
    """Every import in a file, at any depth (a function's too), as (module, names imported from it):
    `import a.b` gives ("a.b", []), `from .x import y` in package P gives ("P.x", ["y"]), `from .
    import x` gives ("P", ["x"])."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: only j1_min's own modules use it, one level deep
                base = package + (f".{base}" if base else "")
            out.append((base, [a.name for a in node.names]))
    return out


def package_graph(folder: Path) -> dict[str, set[str]]:
    """Module name -> the package's modules it imports (`from . import x` counts as importing x)."""
    package, modules = folder.name, {p.stem for p in folder.glob("*.py")}
    graph = {}
    for path in sorted(folder.glob("*.py")):
        deps = set()
        for module, names in imports(path, package):
            parts = module.split(".")
            if parts[0] != package:
                continue
            if len(parts) > 1 and parts[1] in modules:
                deps.add(parts[1])
            # from j1_min import x / from . import x
            deps |= {n for n in names if len(parts) == 1 and n in modules}
        graph[path.stem] = deps - {path.stem}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as [a, b, ..., a], or None (a depth-first search)."""
    state, stack = {}, []

    def visit(n):
        state[n] = "open"
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == "open":
                return stack[stack.index(m):] + [m]
            if m not in state and (found := visit(m)):
                return found
        state[n] = "done"
        stack.pop()
        return None

    for n in sorted(graph):
        if n not in state and (found := visit(n)):
            return found
    return None


def leaning(path: Path, scripts: set[str], root: Path = ROOT) -> list[str]:
    """What a script or benchmark takes that is not for sharing: a top-level script imported as a
    module, a private name (`_x`) imported from a project module, or one read off an imported
    project module (`mod._x`)."""
    bad, aliases = [], set()
    tree = ast.parse(path.read_text())
    for module, names in imports(path):
        top = module.split(".")[0]
        if top in scripts:
            bad.append(f"imports the script {module}.py")
        if top in scripts or top == PKG:
            bad += [f"imports the private {module}.{n}" for n in names if n.startswith("_")]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases |= {a.asname or a.name for a in node.names
                        if a.name.split(".")[0] in scripts | {PKG}}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == PKG:
            aliases |= {a.asname or a.name for a in node.names}
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr.startswith("_")
            and not node.attr.startswith("__")
                and isinstance(node.value, ast.Name) and node.value.id in aliases):
            bad.append(f"line {node.lineno}: reads the private {node.value.id}.{node.attr}")
    return [f"{path.relative_to(root)}: {b}" for b in bad]


def test_the_package_imports_without_a_cycle():
    graph = package_graph(ROOT / PKG)
    # the graph is really read
    assert len(graph) > 15 and graph["rl"] >= {"grpo", "sampling", "runs"}
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_cycle_check_finds_a_planted_cycle(tmp_path):
    pkg = tmp_path / PKG
    pkg.mkdir()
    (pkg / "a.py").write_text("from .b import f\n")
    (pkg / "b.py").write_text("def f():\n    from . import c\n")  # a deferred import counts too
    (pkg / "c.py").write_text("import j1_min.a\n")
    (pkg / "d.py").write_text("from .a import f\n")
    assert find_cycle(package_graph(pkg)) == ["a", "b", "c", "a"]
    (pkg / "c.py").write_text("")
    assert find_cycle(package_graph(pkg)) is None


def test_no_script_or_benchmark_uses_another_scripts_code_or_private_names():
    scripts = {p.stem for p in ROOT.glob("*.py")}
    assert {"train_sft", "train_grpo", "judge", "data_gen"} <= scripts
    files = sorted([*ROOT.glob("*.py"), *(ROOT / "bench").glob("*.py"),
                    *(ROOT / "scripts").glob("*.py")])
    bad = [b for p in files for b in leaning(p, scripts - {p.stem})]
    assert not bad, "\n".join(bad)


def test_the_leaning_check_sees_each_kind(tmp_path):
    (tmp_path / "x.py").write_text("from train_sft import TINY\nfrom j1_min.sampling import "
                                   "_decode\nimport j1_min.sampling as S\nS._families = "
                                   "None\nimport torch._C\n")
    assert leaning(tmp_path / "x.py", {"train_sft"}, tmp_path) == [
        "x.py: imports the script train_sft.py", "x.py: imports the private "
                                                 "j1_min.sampling._decode",
        "x.py: line 4: reads the private S._families"]
