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


def test_layout_table_states_each_files_size_in_lines():
    rows = re.findall(r"^\| `([\w/]+\.py)` \| (\d+) \|", (ROOT / "docs" / "layout.md").read_text(),
                      re.M)
    assert len(rows) >= 10
    # within 10%, so an edit need not touch README every time, a rewrite does
    for file, lines in rows:
        actual = len((ROOT / file).read_text().splitlines())
        assert abs(actual - int(lines)) <= 0.1 * actual, \
            f"docs/layout.md says {file} has {lines} lines; it has {actual}"


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


def heading_slugs(doc: Path) -> set[str]:
    """The anchors GitHub gives a Markdown file's headings: lower case, punctuation dropped, spaces
    to hyphens."""
    heads = re.findall(r"^#+ (.+)$", doc.read_text(), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in heads}


def headings(doc: Path) -> set[str]:
    return {h.strip() for h in re.findall(r"^#+ (.+)$", doc.read_text(), re.M)}


LINK = re.compile(r"\]\(([^)\s]+)\)")  # [text](target) and ![alt](target)
SECTION = re.compile(r"(README|[\w/]+\.md)(?:'s)?,? \"([^\"]+)\"")  # README's "Results", x.md "Y"


def test_every_link_section_and_figure_the_docs_cite_exists():
    """A relative link names a file that exists (a figure too) and, with #anchor, a heading in it;
    a section cited by name (README's "Results", docs/formats.md "Verdicts") is a heading of that
    document."""
    bad = []
    for doc in doc_files():
        text = doc.read_text()
        for target in LINK.findall(text):
            if re.match(r"[a-z]+:", target):
                continue  # an address outside the repository
            file, _, anchor = target.partition("#")
            path = (doc.parent / file).resolve() if file else doc
            if not path.exists():
                bad.append(f"{doc.name}: links to {target}, which does not exist")
            elif anchor and not anchor.startswith("L") and path.suffix == ".md" \
                    and anchor not in heading_slugs(path):
                bad.append(f"{doc.name}: links to {target}, which has no such heading")
        for name, section in SECTION.findall(text):
            path = ROOT / "README.md" if name == "README" else (ROOT / name if (
                ROOT / name).exists() else ROOT / "docs" / Path(name).name)
            if path.exists() and section not in headings(path):
                bad.append(f'{doc.name}: cites {name} "{section}", which has no such section')
    assert not bad, "\n".join(bad)


def test_the_first_experiments_mean_table_is_what_its_command_prints():
    from first_experiment_table import read_seeds, table
    assert table(read_seeds()) in (ROOT / "docs" / "first_experiment.md").read_text()


def test_readme_forced_wait_excerpt_is_the_walkthroughs_checked_trace():
    """README's trace of pair 42 is the walkthrough's token-by-token completion with the token
    separators dropped; tests/test_embedded.py checks that the walkthrough's is what the command
    prints today."""
    walk = (ROOT / "docs" / "walkthrough.md").read_text()
    tokens = walk.split("--- completion")[1].split("--- verdict")[0].splitlines()[2:]
    trace = "\n".join(tokens).replace("<|im_end|>", "").replace("|", "")
    readme = (ROOT / "README.md").read_text()
    excerpt = readme.split("## What a forced")[1].split("```text\n")[1].split("```")[0]
    assert excerpt.strip() == trace.strip() and "[-</think>][+Wait]" in excerpt
