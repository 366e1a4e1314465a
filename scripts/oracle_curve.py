"""The teacher's own scaling curve, before any training: can thinking longer pay on this task?

    python scripts/oracle_curve.py --split val --n 1000 --seed 0
    python scripts/oracle_curve.py --split val --n 1000 --slip-rate 0.2 --land 0.5 --out curve.md

Makes --n synthetic pairs of --split (never test: the task is tuned here) and has each teacher judge
them with 0, 1, 2 and 3 extra reflections forced after its own (s1 budget forcing of the teacher:
each time it would end its thinking it writes one more check). Every budget of an item draws from
the same random stream (the item's id), so a forced check extends the very trace of the budget
before it. Rows:

* `v2` (j1_min/teacher_v2.py): every check slips at --slip-rate, a slipped check lands on the wrong
  response's number with --land, and a running tally decides (a majority over the checks);
* `v2, the last vote decides`: the same checks and slips, decided as the first teacher decides, by
  the last check (that voted): what the tally adds;
* `v1` (j1_min/teacher.py) as written: only its first pass slips (at --slip-rate), its reflections
  never do and the last one decides;
* `plain v2`: the first pass alone (a coin on an even tally); forcing does not apply.

Prints, per row, the accuracy at each budget with its 95% interval (normal approximation), the mean
number of checks' reflections and characters, the gain acc(3) - acc(0) with its paired bootstrap
interval over pairs (j1_min.scaling.bootstrap_interval), and, per budget, the accuracy when A is
right and when B is (the task's balance: no shortcut through the position).
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from j1_min import checks, teacher, teacher_v2  # noqa: E402
from j1_min.files import atomic_write  # noqa: E402
from j1_min.runs import cli  # noqa: E402
from j1_min.scaling import bootstrap_interval  # noqa: E402
from j1_min.tasks import make_pairs, parse_difficulty  # noqa: E402

N, SPLIT, SEED, BUDGETS = 1000, "val", 0, (0, 1, 2, 3)
WRONG_KINDS = "carry,digit"  # wrong responses one slip from the truth, where a slip can land


def curve(items, judge, budgets=BUDGETS) -> dict:
    """budget -> list of (item, correct, label, reflections, chars) for one teacher; judge(item,
    rng, extra) -> a trace dict. Each item's rng restarts at every budget (common random
    numbers)."""
    out = {}
    for b in budgets:
        rows = []
        for it in items:
            t = judge(it, random.Random(f"oracle:{it['id']}"), b)
            rows.append((it["id"], float(t["verdict"] == it["label"]), it["label"],
                         t["num_reflections"], len(t["completion"])))
        out[b] = rows
    return out


def teachers(args) -> dict:
    """name -> judge(item, rng, extra)."""
    q = lambda it: (it["question"], it["response_a"], it["response_b"])  # noqa: E731
    v2 = dict(slip_rate=args.slip_rate, land=args.land, reflections=args.reflections)
    shift = lambda k: (0.0,) * k + teacher_v2.REFLECTIONS  # v1's weights too  # noqa: E731
    return {
        "v2 (tally)": lambda it, rng, k: teacher_v2.teacher_trace(*q(it), rng, extra=k, **v2),
        "v2, the last vote decides": lambda it, rng, k: teacher_v2.teacher_trace(
            *q(it), rng, extra=k, rule="last", **v2),
        "v1 as written (reflections never slip)": lambda it, rng, k: teacher.teacher_trace(
            *q(it), rng, args.slip_rate, shift(k)),
        "plain v2 (first pass only)": lambda it, rng, k: teacher_v2.teacher_trace(
            *q(it), rng, **{**v2, "reflections": (1.0,)}),
    }


def accuracy(rows) -> tuple[float, float]:
    """(mean, half-width of its 95% normal-approximation interval)."""
    m = statistics.mean(r[1] for r in rows)
    return m, 1.96 * (m * (1 - m) / len(rows)) ** 0.5


def table(items, args) -> str:
    """The Markdown report."""
    budgets = BUDGETS
    head = ("| teacher | " + " | ".join(f"acc @ {b} (refl., chars)" for b in budgets)
            + " | gain acc(3) - acc(0) [95% paired bootstrap] |")
    lines = [head, "|" + "---|" * (len(budgets) + 2)]
    balance = ["| teacher | " + " | ".join(f"@ {b}: A / B" for b in budgets) + " |",
               "|" + "---|" * (len(budgets) + 1)]
    for name, judge in teachers(args).items():
        c = curve(items, judge, (0,) if name.startswith("plain") else budgets)
        cells = []
        for b in budgets:
            if b not in c:
                cells.append("")
                continue
            m, h = accuracy(c[b])
            refl = statistics.mean(r[3] for r in c[b])
            chars = statistics.mean(r[4] for r in c[b])
            cells.append(f"{m:.3f} ± {h:.3f} ({refl:.2f}, {chars:.0f})")
        if 3 in c:
            d = {r0[0]: r3[1] - r0[1] for r0, r3 in zip(c[0], c[3])}
            g, lo, hi = bootstrap_interval(d, 10_000, seed=args.seed)
            gain = f"{g:+.3f} [{lo:+.3f}, {hi:+.3f}]"
        else:
            gain = "(no forcing)"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {gain} |")
        split = []
        for b in budgets:
            if b not in c:
                split.append("")
                continue
            by = {s: [r[1] for r in c[b] if r[2] == s] for s in "AB"}
            split.append(" / ".join(f"{statistics.mean(by[s]):.3f}" for s in "AB"))
        balance.append(f"| {name} | " + " | ".join(split) + " |")
    n_a = sum(it["label"] == "A" for it in items)
    return "\n".join([
        f"oracle scaling curve: {len(items)} {args.split} pairs (seed {args.seed}, {n_a} labeled "
        f"A), wrong kinds {args.wrong_kinds}, slip rate {args.slip_rate}, land {args.land}; "
        "acc @ b: b extra reflections forced (± 95% interval; mean reflections and characters)",
        "", *lines, "", "accuracy when the right verdict is A / when it is B", "", *balance, ""])


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=checks.positive_int, default=N, help=f"pairs (default {N})")
    ap.add_argument("--split", choices=["train", "val"], default=SPLIT,
                    help=f"split of the pairs; never test (default {SPLIT})")
    ap.add_argument("--seed", type=checks.seed_int, default=SEED,
                    help=f"seed of the pairs and of the bootstrap (default {SEED})")
    ap.add_argument("--slip-rate", type=checks.unit_interval, default=teacher_v2.SLIP_RATE,
                    help=f"chance that a check slips (default {teacher_v2.SLIP_RATE})")
    ap.add_argument("--land", type=checks.unit_interval, default=teacher_v2.LAND,
                    help="chance that a slipped check lands on the wrong response's number "
                         f"(default {teacher_v2.LAND})")
    ap.add_argument("--reflections", type=checks.weights, default=teacher_v2.REFLECTIONS,
                    help="teacher v2's weights of 0, 1, 2, ... unprompted reflections (default "
                         f"{','.join(map(str, teacher_v2.REFLECTIONS))}; scripts/reproduce_v2.sh "
                         "uses 0.3,0.42,0.17,0.07,0.025,0.015)")
    ap.add_argument("--wrong-kinds", default=WRONG_KINDS,
                    help=f"how wrong responses are wrong (default {WRONG_KINDS})")
    ap.add_argument("--out", help="also write the report to this Markdown file")
    ap.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    return ap


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.out:
        checks.check_output(args.out, args.force, "--out")
    diff = parse_difficulty(wrong_kinds=args.wrong_kinds)
    report = table(make_pairs(args.n, args.split, args.seed, diff), args)
    print(report)
    if args.out:
        atomic_write(args.out, lambda p: Path(p).write_text(report))


if __name__ == "__main__":
    cli(main)
