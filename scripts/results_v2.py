"""scripts/results.py's tables for the second experiment's protocol (docs/experiment.md), printed
for every folder set, as Markdown:

0. accuracy by budget over seeds: per row and budget 0-3, the mean over seeds of the greedy
   accuracy with its t-interval over seeds, and the mean thinking tokens (README's table);
A. the endpoints per row and seed: the gain acc(3) - acc(0) and the least-squares slope of accuracy
   over budgets 0-3 (per budget point; the mean of the per-pair slopes, scaling.item_slopes), each
   with its paired bootstrap interval over test pairs; and per row over seeds, the mean with the
   t-interval over seeds (scaling.t_interval) and the seed-then-pair bootstrap
   (scaling.seed_pair_bootstrap);
B. the comparisons of gains and slopes: per seed s, d_s = endpoint(row) - endpoint(its start), on
   the same test pairs; over seeds, the t-interval of the mean of d_s, the seed-then-pair bootstrap
   of the per-pair differences, and beside them the paired bootstrap over test pairs pooled over
   seeds (scaling.pool_seeds). The primary comparison (PRIMARY: J1-SFT + REINFORCE++ against
   J1-SFT, the gain) is marked; the claim "RL makes forcing pay" is made if and only if its
   t-interval lies above 0. Every other line is exploratory;
C. parallel against sequential with odd K (scaling.matched_k(odd=True): no vote ties): per row and
   seed, the greedy K = 1 control (budget 0 of the greedy pass), the sampled K = 1 control (sample 0
   of the parallel pass), and for b = 1..3 the majority of K_b samples against the greedy budget b,
   both with mean thinking tokens, and their paired difference;
D. (with the test pairs) which of teacher v2's rules the judges keep, per row and budget pooled
   over seeds (teacher_v2.rule_checks): the share of checks that are checks of the pair with the
   comparison their result gives, of votes that are their check's, of tallies that add the vote,
   of tallies that start where the last ended (overall, and after a lead of 3 or more), and of
   decisions that follow the tally.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from j1_min import teacher_v2  # noqa: E402
from j1_min.evaluate import shown_pair  # noqa: E402
from j1_min.scaling import (bootstrap_interval, item_scores, item_slopes,  # noqa: E402
                            matched_k, mean_think_tokens, pool_seeds, seed_pair_bootstrap,
                            t_interval)
from results_plots import v2_curves  # noqa: E402

BUDGETS = (0, 1, 2, 3)
PRIMARY = ("j1_rpp", "j1_sft")  # (row, the row it is compared with): the primary comparison
# (row, its start): an RL row against the SFT it started from; J1-SFT against the ordinary judge
COMPARISONS = (PRIMARY, ("j1_rpp_budget", "j1_sft"), ("plain_rpp", "plain_sft"),
               ("j1_sft", "plain_sft"))
N_BOOT = 10_000


def ci(t: tuple) -> str:
    return f"{t[0]:+.3f} [{t[1]:+.3f}, {t[2]:+.3f}]"


def endpoints(judgments: list[dict]) -> dict | None:
    """{"gain": {pair: s(3) - s(0)}, "slope": {pair: LS slope over budgets 0-3}} from one row's
    greedy judgments; None when a budget of 0-3 is missing."""
    if not set(BUDGETS) <= {j["budget"] for j in judgments}:
        return None
    s = {b: item_scores(judgments, b) for b in BUDGETS}
    return {"gain": {i: s[3][i] - s[0][i] for i in s[0]}, "slope": item_slopes(s, BUDGETS)}


def over_seeds(per_seed: list[dict]) -> str:
    """'t: mean [lo, hi]; seed-pair bootstrap: mean [lo, hi]' of per-pair values, one dict per seed
    (the mean over seeds of each seed's pair mean); '-' with fewer than 2 seeds."""
    if len(per_seed) < 2:
        return "- | -"
    means = [sum(d.values()) / len(d) for d in per_seed]
    return f"{ci(t_interval(means))} | {ci(seed_pair_bootstrap(per_seed, N_BOOT))}"


def accuracy_table(runs: dict, names: dict) -> None:
    """Table 0: each row's greedy accuracy at budgets 0-3, the mean over its seeds [t-interval
    over seeds, clipped to [0, 1]] (mean thinking tokens); the seed's own value with one seed. The
    numbers are the v2 plot's sequential points (results_plots.v2_curves)."""
    lines = []
    for row in names:
        c = v2_curves(runs, row, BUDGETS)
        if not c["seeds"]:
            continue
        cells = [f"{y:.3f} [{lo:.3f}, {hi:.3f}] ({x:.0f})" if c["seeds"] > 1 else
                 f"{y:.3f} ({x:.0f})" for x, y, lo, hi in c["sequential"]]
        lines.append(f"| {names[row]} | {c['seeds']} | " + " | ".join(cells) + " |")
    if not lines:
        return
    print("\naccuracy by budget (greedy, test pairs): the mean over seeds [95% t-interval over "
          "seeds, clipped to [0, 1]] (mean thinking tokens)\n")
    print("| row | seeds | " + " | ".join(f"acc @ {b}" for b in BUDGETS) + " |")
    print("|---" * (2 + len(BUDGETS)) + "|")
    print("\n".join(lines))


def endpoint_table(runs: dict, names: dict) -> dict:
    """Table A; returns {(row, seed): endpoints} for table B."""
    ends = {k: e for k, r in runs.items() if (e := endpoints(r["seq"])) is not None}
    if not ends:
        return ends
    print("\nendpoints (pre-registered): gain = acc(3) - acc(0), slope = least-squares slope of "
          "accuracy over budgets 0-3 (per budget); per seed with the 95% paired bootstrap over "
          "test pairs, over seeds the 95% t-interval and the seed-then-pair bootstrap\n")
    print("| row | seed | gain [pairs] | slope [pairs] |")
    print("|---|---|---|---|")
    for (row, seed), e in ends.items():
        print(f"| {names[row]} | {seed} | {ci(bootstrap_interval(e['gain'], N_BOOT))} | "
              f"{ci(bootstrap_interval(e['slope'], N_BOOT))} |")
    print("\n| row | seeds | gain: t over seeds | gain: seed-pair bootstrap | slope: t over seeds "
          "| slope: seed-pair bootstrap |")
    print("|---" * 6 + "|")
    for row in names:
        per = [e for (rw, _), e in ends.items() if rw == row]
        if per:
            print(f"| {names[row]} | {len(per)} | {over_seeds([e['gain'] for e in per])} | "
                  f"{over_seeds([e['slope'] for e in per])} |")
    return ends


def comparison_table(ends: dict, names: dict) -> None:
    """Table B."""
    lines = []
    for row, start in COMPARISONS:
        seeds = sorted(s for (rw, s) in ends if rw == row and (start, s) in ends)
        for endpoint in ("gain", "slope"):
            per = []
            for s in seeds:
                a, b = ends[row, s][endpoint], ends[start, s][endpoint]
                if set(a) != set(b):
                    raise ValueError(f"{names[row]} and {names[start]} in {s} were not judged on "
                                     "the same test pairs")
                per.append({i: a[i] - b[i] for i in a})
            if not per:
                continue
            kind = "**primary**" if (row, start) == PRIMARY and endpoint == "gain" else (
                "secondary" if (row, start) == PRIMARY else "exploratory")
            each = ", ".join(f"{sum(d.values()) / len(d):+.3f}" for d in per)
            pooled = ci(bootstrap_interval(pool_seeds(per), N_BOOT))
            lines.append(f"| {names[row]} - {names[start]} | {endpoint} | {kind} | {len(per)} | "
                         f"{each} | {over_seeds(per)} | {pooled} |")
    if not lines:
        return
    print("\ncomparisons: d_s = endpoint(row) - endpoint(start) per seed s, on the same test "
          "pairs; the claim 'RL makes forcing pay' is made iff the primary line's t-interval lies "
          "above 0\n")
    print("| row - start | endpoint | status | seeds | d_s per seed | t over seeds | seed-pair "
          "bootstrap | paired bootstrap over pairs (pooled) |")
    print("|---" * 8 + "|")
    print("\n".join(lines))


def parallel_odd_table(runs: dict, names: dict) -> None:
    """Table C."""
    have = {k: r for k, r in runs.items() if r["par"] and set(BUDGETS) <= {j["budget"]
                                                                          for j in r["seq"]}}
    if not have:
        return
    print("\nparallel (majority of K sampled traces at budget 0, K odd, matched to budget b's "
          "thinking tokens) against sequential (greedy, budget b); K = 1 controls: greedy and "
          "sampled\n")
    print("| row | seed | greedy K=1 (tok) | sampled K=1 (tok) | "
          + " | ".join(f"b={b}: K, sequential (tok), parallel (tok), parallel - sequential"
                       for b in BUDGETS[1:]) + " |")
    print("|---" * 7 + "|")
    for (row, seed), r in have.items():
        n_par = 1 + max(j["sample"] for j in r["par"])
        acc = lambda s: sum(s.values()) / len(s)  # noqa: E731
        g1, s1 = item_scores(r["seq"], 0), item_scores(r["par"], 0, 1)
        cells = [f"{acc(g1):.3f} ({mean_think_tokens(r['seq'], 0):.0f})",
                 f"{acc(s1):.3f} ({mean_think_tokens(r['par'], 0, 1):.0f})"]
        for b, k in matched_k(r["seq"], BUDGETS[1:], odd=True).items():
            if k > n_par:
                cells.append(f"K={k}: the parallel pass has {n_par} samples")
                continue
            seq, par = item_scores(r["seq"], b), item_scores(r["par"], 0, k)
            diff = bootstrap_interval({i: par[i] - seq[i] for i in seq}, N_BOOT)
            cells.append(f"{k}, {acc(seq):.3f} ({mean_think_tokens(r['seq'], b):.0f}), "
                         f"{acc(par):.3f} ({mean_think_tokens(r['par'], 0, k):.0f}), {ci(diff)}")
        print(f"| {names[row]} | {seed} | " + " | ".join(cells) + " |")


def rules_table(runs: dict, pairs: dict, names: dict) -> None:
    """Table D: pairs maps a seed folder's name to its test pairs (judge.py's items)."""
    rules = ("check", "vote", "update", "chain", "decision")
    kept: dict = {}
    for (row, seed), r in runs.items():
        if seed not in pairs:
            continue
        for j in r["seq"]:
            if j["sample"]:
                continue
            c = kept.setdefault((row, j["budget"]), {k: [0, 0] for k in (*rules, "late", "n")})
            c["n"][0] += 1
            last = None  # the previous segment's tally after, as written
            for seg in teacher_v2.rule_checks(*shown_pair(pairs[seed], j), j["completion"]):
                for k in rules:
                    if seg[k] is not None:
                        c[k][0] += seg[k]
                        c[k][1] += 1
                if seg["chain"] is not None and last not in (None, "even") and int(last[2:]) >= 3:
                    c["late"][0] += seg["chain"]
                    c["late"][1] += 1
                last = seg["after"]
    if not kept:
        return
    print("\nteacher v2's rules kept by the judges' greedy traces (exploratory; segments: the "
          "first pass and each reflection, prompted or forced; pooled over seeds): check (the "
          "lines are a check of this pair, its comparison the one its result gives), vote (the "
          "check's), update (the tally adds the vote), chain (the tally starts where the last "
          "ended; in brackets, after a lead of 3 or more), decision (follows the tally)\n")
    print("| row | budget | segments per trace | " + " | ".join(rules) + " |")
    print("|---" * (len(rules) + 3) + "|")
    share = lambda k: f"{k[0] / k[1]:.3f}" if k[1] else "-"  # noqa: E731
    for (row, b), c in sorted(kept.items(), key=lambda kv: (list(names).index(kv[0][0]),
                                                            kv[0][1])):
        cells = [share(c[k]) for k in rules]
        cells[3] += f" ({share(c['late'])})"
        print(f"| {names[row]} | {b} | {(c['check'][1]) / c['n'][0]:.2f} | "
              + " | ".join(cells) + " |")


def tables(runs: dict, names: dict, pairs: dict | None = None) -> None:
    """Tables 0, A, B, C and (given the test pairs) D."""
    accuracy_table(runs, names)
    comparison_table(endpoint_table(runs, names), names)
    parallel_odd_table(runs, names)
    if pairs:
        rules_table(runs, pairs, names)
