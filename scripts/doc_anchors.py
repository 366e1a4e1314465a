"""Point every `file.py:name` link in README.md and docs/*.md at the line where `name` is defined
today.

    python scripts/doc_anchors.py
        # rewrite the #L anchors in place
    python scripts/doc_anchors.py --check
        # only list the stale ones (tests/test_docs.py runs this check)

A link looks like [`j1_min/grpo.py:grpo_loss`](../j1_min/grpo.py#L57); `name` may be a function, a
class, a Class.method or a module-level constant.
"""
from __future__ import annotations

import argparse
import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\[`([\w./-]+\.py):([A-Za-z_][\w.]*)`\]\(([^)#\s]+)#L(\d+)\)")


def definitions(path: Path) -> dict[str, int]:
    """name -> line of every module-level function, class and assigned name, and Class.method, in a
    .py file."""
    out = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            out[node.name] = node.lineno
            if isinstance(node, ast.ClassDef):
                out.update({f"{node.name}.{s.name}": s.lineno for s in node.body
                            if isinstance(s, ast.FunctionDef)})
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for t in node.targets if isinstance(node, ast.Assign) else [node.target]:
                if isinstance(t, ast.Name):
                    out[t.id] = node.lineno
    return out


def doc_files() -> list[Path]:
    """README.md and every page under docs/."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def stale_links(doc: Path) -> tuple[str, list[str]]:
    """(the document with every anchor set to today's line, the problems found in it as it
    stands)."""
    problems = []

    def fix(m):
        file, name, target, line = m.groups()
        path = (doc.parent / target).resolve()
        if path != (ROOT / file).resolve() or not path.is_file():
            problems.append(f"{doc.name}: the link for {file}:{name} points to {target}")
            return m.group(0)
        at = definitions(path).get(name)
        if at is None:
            problems.append(f"{doc.name}: {file} defines no {name}")
            return m.group(0)
        if at != int(line):
            problems.append(f"{doc.name}: {file}:{name} is at line {at}, the link says {line}")
        return f"[`{file}:{name}`]({target}#L{at})"

    return LINK.sub(fix, doc.read_text()), problems


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="list stale links; change nothing")
    args = ap.parse_args()
    found = []
    for doc in doc_files():
        text, problems = stale_links(doc)
        found += problems
        if not args.check and text != doc.read_text():
            tmp = doc.with_suffix(".md.tmp")
            tmp.write_text(text)
            tmp.replace(doc)
    print("\n".join(found) or "every link is current")
    if args.check and found:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
