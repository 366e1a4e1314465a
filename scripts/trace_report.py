"""What the second experiment's greedy traces show about forcing (exploratory, not pre-registered).

    python scripts/trace_report.py docs/logs/experiment_v2/seed0 docs/logs/experiment_v2/seed1
    python scripts/trace_report.py runs/v2seed0 --rows j1_sft,j1_rpp --out traces.md

Reads each folder's greedy judgments (judge_<row>.jsonl or .jsonl.gz, budgets 0-3, as
scripts/reproduce_v2.sh leaves them) and its test pairs (test.jsonl or .jsonl.gz), pools the
folders, and prints per row and budget b (b forced "Wait"s):

1. where the accuracy goes: accuracy, the share of traces with no verdict, the share that ran out
   of new tokens before `</think>` (a trace cut off mid-thought), and how often a trace's running
   tally went from a lead back to even (a conflict, which the traces' rule answers with another
   check), in the traces with a verdict and in those without;
2. the votes (`Vote X; tally L -> L'.`, teacher v2's format, j1_min/teacher_v2.py): votes per
   trace, the share of A/B votes naming the wrong response, the share of checks that voted none,
   and whether a wrong vote follows a wrong vote more often than a right one: P(wrong | the
   previous A/B vote in the trace was wrong) against P(wrong | it was right). Independent checks
   give equal shares; a judge that repeats its own mistakes gives a larger first share.

Beside the rows, the teacher (teacher v2 with the folder's settings.txt: slip rate, land,
reflection weights) judges the same test pairs, in the order each was shown, with b extra
reflections forced (as scripts/oracle_curve.py forces it; its traces have no token limit): the
evidence a forced check adds when its slips are independent. Counts are shown beside shares
(k/n); nothing here is a test of the protocol (docs/experiment.md), only a reading of its logs.
"""
from __future__ import annotations

import argparse
import random
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from j1_min import checks, teacher_v2  # noqa: E402
from j1_min.evaluate import shown_pair  # noqa: E402
from j1_min.runs import cli  # noqa: E402
from j1_min.files import atomic_write  # noqa: E402
from results import ROWS, jsonl_file, pairs_by_seed, read_jsonl  # noqa: E402

VOTE = re.compile(r"^Vote (A|B|none); tally (even|[AB]\+\d+) -> (even|[AB]\+\d+)\.$", re.M)
TEACHER = "teacher v2, forced (no token limit)"
BUDGETS = (0, 1, 2, 3)


def votes(completion: str) -> list[tuple[str, str, str]]:
    """The (vote, tally before, tally after) of each vote line in a trace's thinking, in order."""
    thinking = completion.partition("</think>")[0]
    return [(m[1], m[2], m[3]) for m in VOTE.finditer(thinking)]


def trace_stats(judgments: list[dict]) -> dict:
    """The counts of both tables for one row and budget: judgments carry label, verdict,
    completion (the trace after `<think>`)."""
    s = dict(n=len(judgments), right=0, none=0, cut=0, even_with=0, with_n=0, even_without=0,
             votes=0, ab=0, wrong=0, abstain=0, after_wrong=0, wrong_after_wrong=0,
             after_right=0, wrong_after_right=0)
    for j in judgments:
        vs = votes(j["completion"])
        evens = sum(before != "even" and after == "even" for _, before, after in vs)
        s["right"] += j["verdict"] == j["label"]
        if j["verdict"] is None:
            s["none"] += 1
            s["cut"] += "</think>" not in j["completion"]
            s["even_without"] += evens
        else:
            s["with_n"] += 1
            s["even_with"] += evens
        s["votes"] += len(vs)
        prev = None  # the previous A/B vote in this trace: True when wrong
        for v, _, _ in vs:
            if v == "none":
                s["abstain"] += 1
                continue
            wrong = v != j["label"]
            s["ab"] += 1
            s["wrong"] += wrong
            if prev is not None:
                key = "after_wrong" if prev else "after_right"
                s[key] += 1
                s["wrong_" + key] += wrong
            prev = wrong
    return s


def teacher_judgments(pairs: list[dict], shown: list[dict], settings: dict, budget: int) -> list:
    """Teacher v2's traces of the pairs as `shown` (the row's budget-0 judgments: item, id,
    order, label), with `budget` extra reflections; each item's stream restarts at every budget
    (common random numbers, as in scripts/oracle_curve.py)."""
    out = []
    for j in shown:
        q = shown_pair(pairs, j)
        t = teacher_v2.teacher_trace(*q, random.Random(f"oracle:{j['id']}:{j['order']}"),
                                     slip_rate=settings["slip_rate"], land=settings["land"],
                                     reflections=settings["reflections"], extra=budget)
        out.append({"label": j["label"], "verdict": t["verdict"], "completion": t["completion"]})
    return out


def read_settings(d: Path) -> dict:
    """Teacher v2's settings from a run folder's settings.txt (scripts/reproduce_v2.sh)."""
    f = d / "settings.txt"
    if not f.exists():
        raise ValueError(f"{d}: no settings.txt (the teacher's slip rate, land, reflections)")
    kv = dict(w.split("=", 1) for w in f.read_text().split() if "=" in w)
    try:
        return {"slip_rate": float(kv["SLIP_RATE"]), "land": float(kv["LAND"]),
                "reflections": checks.weights(kv["REFLECTIONS"])}
    except (KeyError, ValueError, argparse.ArgumentTypeError) as e:
        raise ValueError(f"{f}: {e}") from None


def share(k: int, n: int) -> str:
    return f"{k / n:.3f} ({k}/{n})" if n else "-"


def add(stats: dict, key, counts: dict) -> None:
    """Sum `counts` into stats[key] (pooling folders)."""
    old = stats.setdefault(key, dict.fromkeys(counts, 0))
    for k, v in counts.items():
        old[k] += v


def report(dirs: list[Path], rows: list[str], with_teacher: bool = True) -> str:
    """The Markdown report over the seed folders `dirs` (pooled)."""
    stats = {}  # (row, budget) -> counts, summed over folders
    pairs = pairs_by_seed(dirs)
    for d in dirs:
        if not d.is_dir():
            raise ValueError(f"{d}: not a folder")
        for row in rows:
            f = jsonl_file(d, f"judge_{row}")
            if f is None:
                continue
            js = [j for j in read_jsonl(f) if j.get("sample", 0) == 0]
            for b in BUDGETS:
                add(stats, (row, b), trace_stats([j for j in js if j["budget"] == b]))
            if with_teacher and d.name in pairs:
                shown, settings = [j for j in js if j["budget"] == 0], read_settings(d)
                for b in BUDGETS:
                    add(stats, (TEACHER, b),
                        trace_stats(teacher_judgments(pairs[d.name], shown, settings, b)))
                with_teacher = False  # once: the test pairs and their order are the same
    if not stats:
        raise ValueError(f"no judge_<row>.jsonl for rows {', '.join(rows)} in "
                         f"{', '.join(map(str, dirs))}")
    names = [*(r for r in rows if (r, 0) in stats), *([TEACHER] if (TEACHER, 0) in stats else [])]
    t1 = ["| row | b | accuracy | no verdict | ran out of tokens | returns to even per trace: "
          "with a verdict / without |", "|---|---|---|---|---|---|"]
    t2 = ["| row | b | votes per trace | wrong (of A/B votes) | none (of votes) | "
          "P(wrong \\| previous wrong) | P(wrong \\| previous right) |",
          "|---|---|---|---|---|---|---|"]
    for name in names:
        label = ROWS.get(name, name)
        for b in BUDGETS:
            s = stats[name, b]
            ev_w = f"{s['even_with'] / s['with_n']:.2f}" if s["with_n"] else "-"
            ev_wo = f"{s['even_without'] / s['none']:.2f}" if s["none"] else "-"
            t1.append(f"| {label} | {b} | {share(s['right'], s['n'])} | {share(s['none'], s['n'])} "
                      f"| {share(s['cut'], s['n'])} | {ev_w} / {ev_wo} |")
            t2.append(f"| {label} | {b} | {s['votes'] / s['n']:.2f} | {share(s['wrong'], s['ab'])} "
                      f"| {share(s['abstain'], s['votes'])} "
                      f"| {share(s['wrong_after_wrong'], s['after_wrong'])} "
                      f"| {share(s['wrong_after_right'], s['after_right'])} |")
    head = (f"greedy traces, pooled over {', '.join(d.name for d in dirs)} (exploratory); "
            "b = forced 'Wait's")
    return "\n".join([head, "", "where the accuracy goes", "", *t1, "", "the votes", "", *t2, ""])


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dirs", nargs="+", type=Path, help="seed folders (one per seed)")
    ap.add_argument("--rows", default="plain_sft,j1_sft,j1_rpp,j1_rpp_budget,plain_rpp",
                    help="rows, comma-separated, as in judge_<row>.jsonl (default: v2's five)")
    ap.add_argument("--no-teacher", action="store_true",
                    help="leave out the teacher's forced traces (it needs the folder's test "
                         "pairs and settings.txt)")
    ap.add_argument("--out", help="also write the report to this Markdown file")
    ap.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    return ap


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.out:
        checks.check_output(args.out, args.force, "--out")
    rows = [r for r in args.rows.split(",") if r]
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        raise ValueError(f"--rows: unknown {', '.join(unknown)} (known: {', '.join(ROWS)})")
    text = report(args.dirs, rows, not args.no_teacher)
    print(text)
    if args.out:
        atomic_write(args.out, lambda p: Path(p).write_text(text))


if __name__ == "__main__":
    cli(main)
