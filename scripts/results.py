"""The experiment's tables and plots, from the judgments and training logs scripts/reproduce.sh
leaves in its folders.

    python scripts/results.py runs/seed0 runs/seed1 runs/seed2 --plot scaling.png --rl-plot rl.png
    python scripts/results.py --matched-k runs/seed0/judge_j1_sft.jsonl
        # K of the row's parallel pass
    python scripts/results.py --better-rl runs/seed0
        # the RL row chosen on validation
    python scripts/results.py runs/v2seed0 runs/v2seed1 ...   # the second experiment
    python scripts/results.py --matched-k runs/v2seed0/judge_j1_sft.jsonl --odd

Each folder is one seed. Per row (ROWS) it reads judge_<row>.jsonl (greedy, budgets 0-3: sequential
scaling) and, if present, parallel_<row>.jsonl (budget 0, K sampled traces: parallel scaling), each
also as the gzipped .jsonl.gz that scripts/reproduce_v2.sh leaves for committing, and prints as
Markdown:

1. per row and seed, accuracy at each budget with its 95% interval (normal approximation,
   evaluate.score) and mean thinking tokens, and the scaling gain acc(3) - acc(0) with its paired
   bootstrap interval over test pairs;
2. verdicts each added "Wait" fixed (wrong at budget b-1, right at b) and broke (the reverse), per
   item and order;
3. parallel against sequential at matched compute: the majority of K_b samples against budget b
   (j1_min/scaling.py says how K_b is matched), both with measured mean thinking tokens, and their
   paired difference;
4. the difference in scaling gain between every two rows, the later row in ROWS minus the earlier
   (an RL row minus the SFT row it started from), pooled over seeds and per seed, with paired
   bootstrap intervals over test pairs (finding 3 is the RL rows' gain against J1-SFT's);
5. where the folder holds the test pairs (test.jsonl, or test.jsonl.gz), per row and seed and
   budget, the share of test pairs judged right for the right reason: the verdict is right and its
   trace's last check is true and decides it (j1_min.teacher.grounded, the test the SFT data
   passed), and in brackets the share of right verdicts that are grounded. A judge that is right
   by a shortcut (a position bias, a check that ignores its digits) scores lower here than in
   table 1;
6. per row and seed and budget, the accuracy when the right verdict is A and when it is B (as
   shown; a position bias is a gap between the two), and the share of traces with no verdict.

Folders of the second experiment (settings.txt says TEACHER_VERSION=v2; teacher_version) get its
protocol's tables (scripts/results_v2.py: the gain and the least-squares slope per row and seed, the
t-interval over seeds and the seed-then-pair bootstrap beside the paired bootstrap over pairs, the
primary comparison marked, odd K with the greedy and sampled K = 1 controls) in place of table 3,
and table 5 by teacher_v2.grounded. The plots are drawn by scripts/results_plots.py.

--plot: accuracy against mean thinking tokens, sequential and parallel; for the first experiment
one panel per row (a line per seed), for the second a 2 x 2 grid, a panel per comparison (the RL
row beside the SFT it started from, J1-SFT beside the ordinary judge), each row's mean over seeds
with its seed-level band (the t-interval over seeds).
--rl-plot: a panel per RL row (down) and seed folder (across), the reward per step (and its 10-step
mean), the share of flat groups per step (groups whose rewards are all equal carry no
signal), the validation accuracy at each evaluation and, where the stopping rule kept one, the kept
step (a dashed line), from <row>.log.jsonl or its gzipped copy (runs.read_log: lines a resume
superseded are dropped).
--better-rl: of the J1-SFT RL rows, the one whose last validation line has the highest mean of
val_acc_budget0 and val_acc_budget<eval budget> (ties: the first in ROWS); the test pairs are never
read.
"""
from __future__ import annotations

import argparse
import gzip
import itertools
import json
import sys
from pathlib import Path

# run from anywhere, with the repository's j1_min
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from j1_min import checks, teacher, teacher_v2  # noqa: E402
from j1_min.data import read_pairs  # noqa: E402
from j1_min.evaluate import item_key, score, shown_pair  # noqa: E402
from j1_min.runs import cli, logged, read_log  # noqa: E402
from j1_min.scaling import (bootstrap_interval, item_scores, matched_k,  # noqa: E402
                            mean_think_tokens, paired_differences, pool_seeds)
from results_plots import plot_rl, plot_scaling, plot_v2  # noqa: E402
import results_v2  # noqa: E402

ROWS = {"plain_sft": "ordinary judge (SFT, plain traces)", "j1_sft": "J1-SFT (reflection traces)",
        "j1_reinforce_pp": "J1-SFT + REINFORCE++", "j1_grpo": "J1-SFT + GRPO",
        "j1_grpo_budget": "J1-SFT + GRPO, budget 0-3 per group",
        "plain_rl": "plain SFT + the better RL", "j1_rl": "J1-SFT + GRPO (earlier runs)",
        # the second experiment's RL rows (scripts/reproduce_v2.sh): REINFORCE++, its stopping rule
        "j1_rpp": "J1-SFT + REINFORCE++ (v2)", "j1_rpp_budget": "J1-SFT + REINFORCE++, budget 0-3",
        "plain_rpp": "plain SFT + REINFORCE++"}
RL_ROWS = ("j1_reinforce_pp", "j1_grpo", "j1_grpo_budget", "plain_rl", "j1_rl", "j1_rpp",
           "j1_rpp_budget", "plain_rpp")
BETTER_RL_CANDIDATES = ("j1_reinforce_pp", "j1_grpo", "j1_grpo_budget")
N_BOOT = 10_000


def read_jsonl(path: Path) -> list[dict]:
    """The records of a JSONL file, gzipped or not (by its name: `.gz`)."""
    try:
        text = (gzip.decompress(path.read_bytes()).decode() if path.suffix == ".gz"
                else path.read_text())
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: {e}") from None


def jsonl_file(d: Path, name: str) -> Path | None:
    """d/name.jsonl, else the gzipped d/name.jsonl.gz (scripts/reproduce_v2.sh leaves the
    judgments gzipped for committing; docs/logs/experiment_v2 holds the test pairs so), else
    None."""
    for f in (d / f"{name}.jsonl", d / f"{name}.jsonl.gz"):
        if f.exists():
            return f
    return None


def pairs_by_seed(dirs: list[Path]) -> dict:
    """Seed folder's name -> its test pairs (test.jsonl or test.jsonl.gz), for the folders that
    hold them."""
    return {d.name: read_pairs(f) for d in dirs if (f := jsonl_file(d, "test"))}


def teacher_version(d: Path) -> str:
    """The teacher a run folder's traces came from: settings.txt's TEACHER_VERSION (written by
    scripts/reproduce_v2.sh), else v1 (scripts/reproduce.sh writes none)."""
    f = d / "settings.txt"
    if f.exists():
        for word in f.read_text().split():
            if word.startswith("TEACHER_VERSION="):
                return word.split("=", 1)[1]
    return "v1"


def load(dirs: list[Path], required: bool = True) -> dict:
    """(row, seed folder) -> {"seq": judgments, "par": judgments or None}, for every
    judge_<row>.jsonl (or .jsonl.gz) found; none found is an error when `required`."""
    runs = {}
    for d in dirs:
        if not d.is_dir():
            raise ValueError(f"{d}: not a folder")
        for row in ROWS:
            f = jsonl_file(d, f"judge_{row}")
            if f:
                par = jsonl_file(d, f"parallel_{row}")
                runs[row, d.name] = {"seq": read_jsonl(f), "par": read_jsonl(par) if par
                                     else None}
    if not runs and required:
        raise ValueError(f"no judge_<row>.jsonl in {', '.join(map(str, dirs))}")
    return runs


def fixed_broken(judgments: list[dict]) -> dict:
    """budget b -> (fixed, broken) between budget b-1 and b, over (item, order), first sample."""
    right = {(item_key(j), j["order"], j["budget"]): j["correct"] for j in judgments
             if j["sample"] == 0}
    budgets = sorted({k[2] for k in right})
    out = {}
    for lo, hi in zip(budgets, budgets[1:]):
        pairs = [(right[(i, o, lo)], right[(i, o, hi)]) for i, o, b in right if b == hi
                 and (i, o, lo) in right]
        out[hi] = (sum(not a and b for a, b in pairs), sum(a and not b for a, b in pairs))
    return out


def ci(t: tuple) -> str:
    return f"{t[0]:+.3f} [{t[1]:+.3f}, {t[2]:+.3f}]"


def sequential_table(runs: dict, budgets: list[int]) -> None:
    lo, hi = budgets[0], budgets[-1]
    print("| row | seed | " + " | ".join(f"acc @ {b} (think tok)" for b in budgets) +
          f" | gain acc({hi}) - acc({lo}) [95% paired bootstrap] |")
    print("|---" * (len(budgets) + 3) + "|")
    for (row, seed), r in runs.items():
        t = score(r["seq"])
        s = {b: item_scores(r["seq"], b) for b in (lo, hi)}
        gain = bootstrap_interval({i: s[hi][i] - s[lo][i] for i in s[lo]}, N_BOOT)
        cells = " | ".join(f"{t[b]['accuracy']:.3f} ± {t[b]['ci95']:.3f} "
                           f"({t[b]['think_tokens']:.0f})" for b in budgets)
        print(f"| {ROWS[row]} | {seed} | {cells} | {ci(gain)} |")
    print(f"\n(n = {next(iter(score(r['seq']).values()))['n']} test pairs per cell; ± is the "
          f"normal-approximation 95% interval; a missing verdict scores 0)\n")
    print("verdicts each added 'Wait' fixed / broke (item-orders wrong at budget b-1 and right at "
          "b / the reverse)\n")
    print("| row | seed | " + " | ".join(f"{b - 1}→{b}: fixed / broken" for b in budgets[1:])
          + " |")
    print("|---" * (len(budgets) + 1) + "|")
    for (row, seed), r in runs.items():
        fb = fixed_broken(r["seq"])
        print(f"| {ROWS[row]} | "
              f"{seed} | " + " | ".join(f"{fb[b][0]} / {fb[b][1]}" for b in budgets[1:]) + " |")


def parallel_table(runs: dict, budgets: list[int]) -> None:
    have = {k: r for k, r in runs.items() if r["par"]}
    if not have:
        return
    print("\nparallel (majority of K sampled traces, budget 0) against sequential (budget b) at "
          "matched compute\n")
    print("| row | seed | b | K | sequential acc (think tok) | parallel acc (think tok) | parallel "
          "- sequential |")
    print("|---" * 7 + "|")
    for (row, seed), r in have.items():
        ks, n_par = matched_k(r["seq"], budgets[1:]), 1 + max(j["sample"] for j in r["par"])
        for b, k in ks.items():
            if k > n_par:
                print(f"| {ROWS[row]} | {seed} | {b} | {k} | (parallel pass has only {n_par} "
                      "samples) | | |")
                continue
            seq, par = item_scores(r["seq"], b), item_scores(r["par"], 0, k)
            diff = bootstrap_interval({i: par[i] - seq[i] for i in seq}, N_BOOT)
            print(f"| {ROWS[row]} | {seed} | {b} | {k} | {sum(seq.values()) / len(seq):.3f} "
                  f"({mean_think_tokens(r['seq'], b):.0f}) | {sum(par.values()) / len(par):.3f} "
                  f"({mean_think_tokens(r['par'], 0, k):.0f}) | {ci(diff)} |")


def greedy(judgments: list[dict], budget: int) -> list[dict]:
    """The sequential judgments at one budget (their first sample: the greedy trace)."""
    return [j for j in judgments if j["budget"] == budget and j["sample"] == 0]


def grounded_table(runs: dict, dirs: list[Path], budgets: list[int]) -> None:
    """Table 5: right and grounded, per budget (greedy first samples, the order each was shown), by
    the grounded rule of the folder's teacher (teacher_version)."""
    pairs = pairs_by_seed(dirs)
    have = {k: r for k, r in runs.items() if k[1] in pairs}
    if not have:
        return
    print("\nright for the right reason: the share of test pairs whose verdict is right and rests "
          "on its trace's evidence (j1_min.teacher.grounded for v1's folders: a true check; "
          "j1_min.teacher_v2.grounded for v2's: checks, votes, tally and verdict consistent); in "
          "brackets, the share of right verdicts that do\n")
    print("| row | seed | " + " | ".join(f"@ {b}" for b in budgets) + " |")
    print("|---" * (len(budgets) + 2) + "|")
    for (row, seed), r in have.items():
        items, cells = pairs[seed], []
        rule = GROUNDED[teacher_version(next(d for d in dirs if d.name == seed))]
        for b in budgets:
            js = greedy(r["seq"], b)
            right = [j for j in js if j["correct"]]
            sound = sum(is_grounded(items, j, rule) for j in right)
            cells.append(f"{sound / len(js):.3f} ({sound / max(len(right), 1):.0%})")
        print(f"| {ROWS[row]} | {seed} | " + " | ".join(cells) + " |")


def position_table(runs: dict, budgets: list[int]) -> None:
    """Table 6: accuracy when A is right / when B is right, and the share of traces without a
    verdict, per budget (first samples)."""
    print("\naccuracy when the right verdict is A / when it is B; share of traces with no verdict"
          "\n")
    print("| row | seed | " + " | ".join(f"@ {b}: A / B; none" for b in budgets) + " |")
    print("|---" * (len(budgets) + 2) + "|")
    for (row, seed), r in runs.items():
        cells = []
        for b in budgets:
            js = greedy(r["seq"], b)
            acc = {}
            for side in "AB":
                ok = [j["correct"] for j in js if j["label"] == side]
                acc[side] = f"{sum(ok) / len(ok):.3f}" if ok else "-"
            none = sum(j["verdict"] is None for j in js) / len(js)
            cells.append(f"{acc['A']} / {acc['B']}; {none:.0%}")
        print(f"| {ROWS[row]} | {seed} | " + " | ".join(cells) + " |")


GROUNDED = {"v1": teacher.grounded, "v2": teacher_v2.grounded}


def is_grounded(items, j: dict, rule=teacher.grounded) -> bool:
    """rule (a teacher's grounded) on judgment j's trace and the pair it was shown (items: the
    lines of test.jsonl, as judge.py read them; evaluate.shown_pair)."""
    return rule(*shown_pair(items, j), j["completion"])


def gain_differences(runs: dict, budgets: list[int]) -> None:
    lo, hi = budgets[0], budgets[-1]
    rows = [row for row in ROWS if any(k[0] == row for k in runs)]
    seeds = sorted({k[1] for k in runs})
    scores = {k: {b: item_scores(r["seq"], b) for b in (lo, hi)} for k, r in runs.items()}
    print(f"\ndifference in scaling gain, row 2 - row 1, gain = acc({hi}) - acc({lo}); 95% paired "
          f"bootstrap intervals over test pairs ({N_BOOT} resamples)\n")
    print("| row 1 | row 2 | pooled over seeds | " + " | ".join(seeds) + " |")
    print("|---" * (len(seeds) + 3) + "|")
    for r1, r2 in itertools.combinations(rows, 2):
        per = {s: paired_differences([(scores[r2, s], scores[r1, s])], lo, hi) for s in seeds
               if (r1, s) in scores and (r2, s) in scores}
        if not per:
            continue
        pooled = bootstrap_interval(pool_seeds(list(per.values())), N_BOOT)
        cells = " | ".join(ci(bootstrap_interval(per[s], N_BOOT)) if s in per else "-"
                           for s in seeds)
        print(f"| {ROWS[r1]} | {ROWS[r2]} | {ci(pooled)} | {cells} |")


def better_rl(d: Path) -> str:
    """The J1-SFT RL row with the best last validation line (module docstring)."""
    best = None
    for row in BETTER_RL_CANDIDATES:
        f = logged(d / f"{row}.pt")
        if f is None:
            continue
        vals = [r for r in read_log(d / f"{row}.pt") if any(k.startswith("val_acc_") for k in r)]
        if not vals:
            raise ValueError(f"{f}: no validation line (train_grpo.py --val)")
        last = vals[-1]
        v = sum(last[k] for k in last
                if k.startswith("val_acc_")) / sum(k.startswith("val_acc_") for k in last)
        if best is None or v > best[1]:
            best = (row, v)
    if best is None:
        raise ValueError(f"--better-rl {d}: no log of {', '.join(BETTER_RL_CANDIDATES)}")
    return best[0]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dirs", nargs="*", help="run folders of scripts/reproduce.sh, one per seed")
    ap.add_argument("--plot", help="PNG: accuracy against mean thinking tokens, sequential and "
                                   "parallel, per row")
    ap.add_argument("--rl-plot", help="PNG: reward, flat-group share and validation accuracy per "
                                      "RL step, a panel per RL row (down) and seed folder (across)")
    ap.add_argument("--force", action="store_true", help="overwrite --plot / --rl-plot if they "
                                                         "exist")
    ap.add_argument("--matched-k", metavar="JSONL", help="print the K of the parallel pass for "
                                                         "this sequential judge_<row>.jsonl (the "
                                                         "largest of K_1..K_3), and nothing else")
    ap.add_argument("--odd", action="store_true", help="with --matched-k: K odd (the second "
                                                       "experiment's rule: no vote ties)")
    ap.add_argument("--better-rl", metavar="DIR", help="print the RL row chosen on validation in "
                                                       "DIR, and nothing else")
    args = ap.parse_args(argv)
    if args.matched_k:
        print(max(matched_k(read_jsonl(Path(args.matched_k)), odd=args.odd).values()))
        return
    if args.better_rl:
        print(better_rl(Path(args.better_rl)))
        return
    if not args.dirs:
        raise ValueError("give one or more run folders (or --matched-k / --better-rl)")
    for p in (args.plot, args.rl_plot):
        if p:
            checks.check_output(p, args.force, "")
    dirs = [Path(d) for d in args.dirs]
    # RL curves alone may come before judging
    runs = load(dirs, required=not args.rl_plot or bool(args.plot))
    budgets = sorted({j["budget"] for r in runs.values() for j in r["seq"]})
    # the second experiment's folders: its protocol's tables, odd K in the parallel ones
    v2 = any(teacher_version(d) == "v2" for d in dirs)
    if runs:
        sequential_table(runs, budgets)
        if v2:
            results_v2.tables(runs, ROWS, pairs_by_seed(dirs))
        else:
            parallel_table(runs, budgets)
        gain_differences(runs, budgets)
        grounded_table(runs, dirs, budgets)
        position_table(runs, budgets)
    if args.plot and v2:
        plot_v2(runs, args.plot, args.force, ROWS)
    elif args.plot:
        plot_scaling(runs, budgets, args.plot, args.force, ROWS)
    if args.rl_plot:
        plot_rl(dirs, args.rl_plot, args.force, ROWS, RL_ROWS)


if __name__ == "__main__":
    cli(main)
