"""Sequential against parallel scaling, and the scaling gain compared between rows with a paired
bootstrap.

Inputs are judge.py --out records (one per item, order, budget, sample). Per test pair an item
scores 1 when every judged order is right, 0 when one is wrong, as evaluate.score does; with several
samples an order's verdict is their majority (self-consistency, Wang et al. 2023), and a tie of
votes scores 0.5 (a coin flip between the tied verdicts), a sample set with no verdict at all 0.

* Sequential scaling: the greedy judge at budgets 0..3 (s1 budget forcing, Muennighoff et al. 2025).
* Parallel scaling at matched compute: K sampled traces at budget 0 and their majority vote, with
  K_b = max(1, round(T_b / T_0)), where T_b is the row's mean thinking tokens per trace at budget b
  (sequential pass) and T_0 at budget 0, so that K traces cost about what one budget-b trace costs.
  One parallel pass with K = max_b K_b serves every b: the vote at b uses samples 0..K_b-1
  (independent streams, so a prefix is a K_b-sample draw). Its measured tokens, the sum over the K_b
  samples, are reported beside it so the match can be checked.
* The scaling gain of a row, g = acc(b_hi) - acc(b_lo), and the difference of gains between two rows
  judged on the same test pairs, Δ = g_1 - g_2 = mean_i d_i with d_i = (s_1(i, b_hi) - s_1(i, b_lo))
  - (s_2(i, b_hi) - s_2(i, b_lo)). Its interval is the paired bootstrap percentile interval (Efron &
  Tibshirani 1993, An Introduction to the Bootstrap, ch. 13): resample test pairs with replacement,
  keeping each pair's four scores together, recompute the mean of d, take the 2.5% and 97.5%
  quantiles. Pooled over seeds, d_i is first averaged over the seeds that judged pair i (the test
  pairs are the same for every seed), so the interval is over test pairs; the per-seed intervals
  show the seed-to-seed spread.
"""
from __future__ import annotations

from collections import defaultdict

import torch

from .evaluate import item_key, majority


def item_scores(judgments: list[dict], budget: int, samples: int | None = None) -> dict:
    """item -> score at `budget`: 1 if every order's verdict (the majority of its first `samples`
    samples, all if None) is right, 0 if one is wrong, 0.5 when none is wrong and a vote is tied, 0
    for an order with no verdict."""
    votes = defaultdict(list)
    for j in judgments:
        if j["budget"] == budget and (samples is None or j["sample"] < samples):
            votes[(item_key(j), j["order"])].append(j)
    if not votes:
        raise ValueError(f"no judgments at budget {budget}")
    per_item = defaultdict(list)
    for (item, _), js in votes.items():
        vs = [j["verdict"] for j in js]
        v = majority(vs)
        tied = v is None and any(x is not None for x in vs)
        per_item[item].append(0.5 if tied else 0.0 if v is None else float(v == js[0]["label"]))
    return {i: 0.0 if 0.0 in s else min(s) for i, s in per_item.items()}


def mean_think_tokens(judgments: list[dict], budget: int, samples: int | None = None) -> float:
    """Mean thinking tokens per (item, order) at `budget`, summed over its first `samples` samples:
    the compute one judgment of that setting costs."""
    total, keys = 0, set()
    for j in judgments:
        if j["budget"] == budget and (samples is None or j["sample"] < samples):
            total += j["think_tokens"]
            keys.add((item_key(j), j["order"]))
    if not keys:
        raise ValueError(f"no judgments at budget {budget}")
    return total / len(keys)


def matched_k(sequential: list[dict], budgets=(1, 2, 3)) -> dict:
    """budget -> K_b = max(1, round(T_b / T_0)) from one row's sequential judgments (greedy, one
    sample)."""
    t0 = mean_think_tokens(sequential, 0)
    if t0 <= 0:
        raise ValueError("mean thinking tokens at budget 0 is 0: K cannot be matched")
    return {b: max(1, round(mean_think_tokens(sequential, b) / t0)) for b in budgets}


def paired_differences(rows: list[tuple[dict, dict]], lo: int = 0, hi: int = 3) -> dict:
    """item -> d_i for two rows' per-budget item scores, each row given as {budget: {item: score}}:
    (s_1(i, hi) - s_1(i, lo)) - (s_2(i, hi) - s_2(i, lo)). The rows must cover the same items."""
    (a, b), = rows
    items = set(a[hi])
    if not (items == set(a[lo]) == set(b[hi]) == set(b[lo])):
        raise ValueError("the two rows were not judged on the same test pairs")
    return {i: (a[hi][i] - a[lo][i]) - (b[hi][i] - b[lo][i]) for i in items}


def pool_seeds(per_seed: list[dict]) -> dict:
    """item -> the mean of d_i over the seeds that have item i."""
    sums = defaultdict(list)
    for d in per_seed:
        for i, v in d.items():
            sums[i].append(v)
    return {i: sum(v) / len(v) for i, v in sums.items()}


def bootstrap_interval(values: dict | list, n_boot: int = 10_000, seed: int = 0,
                       level: float = 0.95):
    """(mean, low, high): the mean of per-pair values and its paired bootstrap percentile interval
    (Efron & Tibshirani 1993, ch. 13): n_boot resamples of the pairs with replacement, the (1 -
    level)/2 and (1 + level)/2 quantiles of their means. Seeded, so a table is reproducible."""
    xs = torch.tensor(list(values.values()) if isinstance(values, dict) else list(values),
                      dtype=torch.float64)
    if not len(xs):
        raise ValueError("bootstrap_interval: no values")
    g, n = torch.Generator().manual_seed(seed), len(xs)
    means = torch.cat([xs[torch.randint(n, (min(1000, n_boot - s), n), generator=g)].mean(1)
                       for s in range(0, n_boot, 1000)]).sort().values
    k = lambda q: means[min(n_boot - 1, max(0, int(q * n_boot)))].item()
    return xs.mean().item(), k((1 - level) / 2), k((1 + level) / 2)
