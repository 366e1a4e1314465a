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


def matched_k(sequential: list[dict], budgets=(1, 2, 3), odd: bool = False) -> dict:
    """budget -> K_b = max(1, round(T_b / T_0)) from one row's sequential judgments (greedy, one
    sample); with `odd`, K_b is the odd integer nearest T_b / T_0 (2 * floor(r / 2) + 1), so a
    majority of K_b votes never ties (the second experiment's rule: a tie scored 0.5 makes a vote
    of 2 worth one sample in expectation)."""
    t0 = mean_think_tokens(sequential, 0)
    if t0 <= 0:
        raise ValueError("mean thinking tokens at budget 0 is 0: K cannot be matched")
    ratio = {b: mean_think_tokens(sequential, b) / t0 for b in budgets}
    if odd:
        return {b: 2 * int(r // 2) + 1 for b, r in ratio.items()}
    return {b: max(1, round(r)) for b, r in ratio.items()}


def item_slopes(scores: dict, budgets=(0, 1, 2, 3)) -> dict:
    """item -> the least-squares slope of its score over `budgets` (per budget point), given
    {budget: {item: score}}: sum_b w_b s(i, b) with w_b = (b - mean b) / sum_b (b - mean b)^2. The
    slope of the mean accuracy is the mean of these, so the paired bootstrap applies to it as to
    the gain (for budgets 0-3, w = -0.3, -0.1, 0.1, 0.3)."""
    mean_b = sum(budgets) / len(budgets)
    ss = sum((b - mean_b) ** 2 for b in budgets)
    if ss == 0:
        raise ValueError("a slope needs at least two budgets")
    items = set(scores[budgets[0]])
    if any(set(scores[b]) != items for b in budgets):
        raise ValueError("every budget must score the same items")
    return {i: sum((b - mean_b) / ss * scores[b][i] for b in budgets) for i in items}


# Student's t quantile t(0.975, df), df = 1..30 (two-sided 95%); tests/test_scaling.py checks them
# against the integrated density
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042)


def t_interval(values: list[float]) -> tuple[float, float, float]:
    """(mean, low, high): the 95% t-interval of the mean over seeds, mean ± t(0.975, n - 1) · sd /
    √n with sd the sample standard deviation (Student 1908): the interval a reader needs when the
    seeds, not the test pairs, are what varies. 2 to 31 values."""
    n = len(values)
    if not 2 <= n <= len(T975) + 1:
        raise ValueError(f"t_interval: needs 2 to {len(T975) + 1} seeds, got {n}")
    m = sum(values) / n
    sd = (sum((v - m) ** 2 for v in values) / (n - 1)) ** 0.5
    h = T975[n - 2] * sd / n ** 0.5
    return m, m - h, m + h


def seed_pair_bootstrap(per_seed: list[dict], n_boot: int = 10_000, seed: int = 0,
                        level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): a two-stage bootstrap of the mean over seeds of per-pair values (Davison
    & Hinkley 1997, sec. 3.8, resampling both stages): each resample draws the seeds with
    replacement, then each drawn seed's pairs with replacement, and takes the mean over drawn seeds
    of their pair means; the percentile interval of n_boot such means. Its width holds the
    seed-to-seed variance that the paired bootstrap over pairs leaves out."""
    if len(per_seed) < 2:
        raise ValueError("seed_pair_bootstrap: needs at least 2 seeds")
    xs = [torch.tensor(list(d.values()), dtype=torch.float64) for d in per_seed]
    g, s = torch.Generator().manual_seed(seed), len(xs)
    means = torch.empty(n_boot, dtype=torch.float64)
    for k in range(n_boot):
        drawn = torch.randint(s, (s,), generator=g).tolist()
        means[k] = sum(xs[j][torch.randint(len(xs[j]), (len(xs[j]),), generator=g)].mean()
                       for j in drawn) / s
    means = means.sort().values
    q = lambda p: means[min(n_boot - 1, max(0, int(p * n_boot)))].item()  # noqa: E731
    return sum(x.mean().item() for x in xs) / s, q((1 - level) / 2), q((1 + level) / 2)


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
