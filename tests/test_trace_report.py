"""Specifications for scripts/trace_report.py: the exploratory reading of v2's greedy traces (no
verdict, cut off, tally returns to even, vote errors and whether they follow one another)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from j1_min.tasks import make_pairs, parse_difficulty

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import trace_report  # noqa: E402


def trace(votes: str, end: str = "[[B]]") -> str:
    """A thinking trace with one vote line per letter of `votes` (A, B or n for none), the tally
    kept as teacher v2 writes it, then `end` (after `</think>`; None: cut off mid-thought)."""
    lines, t = [], 0
    for v in votes:
        before = "even" if t == 0 else f"A+{t}" if t > 0 else f"B+{-t}"
        t += {"A": 1, "B": -1, "n": 0}[v]
        after = "even" if t == 0 else f"A+{t}" if t > 0 else f"B+{-t}"
        lines += ["check", f"Vote {'none' if v == 'n' else v}; tally {before} -> {after}."]
    return "\n".join(lines) + ("" if end is None else f"\n</think>\n{end}")


def test_votes_errors_and_their_succession_are_counted_per_vote():
    js = [{"label": "B", "verdict": "B", "completion": trace("AAB" + "BB")},  # w w r r r
          {"label": "A", "verdict": None, "completion": trace("ABAB", None)},  # r w r w, cut
          {"label": "A", "verdict": None, "completion": trace("nA", "no verdict")}]
    s = trace_report.trace_stats(js)
    assert (s["n"], s["right"], s["none"], s["cut"]) == (3, 1, 2, 1)
    assert (s["votes"], s["ab"], s["abstain"], s["wrong"]) == (11, 10, 1, 4)
    # trace 1: after w: w, r; after r: r, r. trace 2: after r: w, w; after w: r. trace 3: none
    assert (s["after_wrong"], s["wrong_after_wrong"]) == (3, 1)
    assert (s["after_right"], s["wrong_after_right"]) == (4, 2)
    # a lead that returns to even: trace 1 once (A+1, A+2, A+1, even, B+1), trace 2 twice; trace
    # 3's none vote leaves an even tally even (no lead to return from)
    assert (s["even_with"], s["with_n"], s["even_without"]) == (1, 1, 2)


def test_a_vote_line_after_the_thinking_is_not_a_vote():
    c = trace("A", "[[A]]") + "\nVote B; tally A+1 -> even."
    assert trace_report.votes(c) == [("A", "even", "A+1")]


@pytest.fixture
def folder(tmp_path):
    """A seed folder: 40 test pairs, a row's greedy judgments, settings.txt with a teacher whose
    checks never slip."""
    pairs = make_pairs(40, "test", seed=5, diff=parse_difficulty(wrong_kinds="carry,digit"))
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs))
    js = [{"item": i, "id": p["id"], "order": "AB", "budget": b, "sample": 0, "label": p["label"],
           "verdict": p["label"], "completion": trace(p["label"] * (b + 1), f"[[{p['label']}]]")}
          for i, p in enumerate(pairs) for b in range(4)]
    (tmp_path / "judge_j1_sft.jsonl").write_text("".join(json.dumps(j) + "\n" for j in js))
    (tmp_path / "settings.txt").write_text("TEACHER_VERSION=v2\nSLIP_RATE=0 LAND=0.6 "
                                           "REFLECTIONS=0.5,0.5\n")
    return tmp_path


def test_the_report_pools_rows_and_adds_the_teacher_on_the_same_pairs(folder, capsys):
    trace_report.main([str(folder), "--rows", "j1_sft"])
    out = capsys.readouterr().out
    row = "| J1-SFT (reflection traces) | 3 | 1.000 (40/40) | 0.000 (0/40) | 0.000 (0/40) |"
    assert row in out
    assert "| J1-SFT (reflection traces) | 3 | 4.00 | 0.000 (0/160) |" in out
    # a teacher that never slips is always right and never votes wrong, at every budget
    for b in range(4):
        assert f"| teacher v2, forced (no token limit) | {b} | 1.000 (40/40) |" in out
    votes = out.partition("the votes")[2].splitlines()
    teacher = [line.split("|")[4].strip() for line in votes if line.startswith("| teacher")]
    assert len(teacher) == 4 and all(c.startswith("0.000 (0/") for c in teacher), teacher


def test_unknown_rows_and_a_folder_without_settings_are_refused_by_name(folder, tmp_path):
    with pytest.raises(ValueError, match="unknown j1_typo"):
        trace_report.main([str(folder), "--rows", "j1_typo"])
    (folder / "settings.txt").unlink()
    with pytest.raises(ValueError, match="no settings.txt"):
        trace_report.main([str(folder), "--rows", "j1_sft"])
    trace_report.main([str(folder), "--rows", "j1_sft", "--no-teacher"])  # needs none
