"""Judging many pairs and scoring the verdicts: budgets (s1 budget forcing, sequential scaling),
samples with a majority vote (parallel scaling), both presentation orders (position consistency),
and accuracy with its 95% interval. judge.py, train_sft.py and train_grpo.py all evaluate through
here.
"""
from __future__ import annotations

import math
from collections import Counter

from tqdm import tqdm

from .templates import TIE
from .judge_format import (J1_MIN, completion_text, encode_prompt, forcing_kwargs, judge_verdict,
                           swap_label)
from .sampling import generate
from .show_tokens import constrained_verdict


def judge_pairs(model, tok, items: list[dict], *, budgets=(0,), samples: int = 1,
                swap: bool = False, temperature: float = 0.0, seed: int = 0,
                max_new_tokens: int = 1024, max_think_tokens: int | None = None,
                wait_text: str = "Wait", batch_size: int = 32, progress: bool = False,
                template=J1_MIN, logprob_verdict: bool = False) -> list[dict]:
    """One judgment per (item, order, budget, sample), as dicts: item (its position in `items`), id,
    order ("AB" as given, "BA" swapped), budget, sample, label (the right verdict as shown), verdict
    (as shown: "A", "B", "tie" where the template has one, or None; read by the template's
    verdict_rule, judge_format.judge_verdict), correct,
    completion (the full trace), think_tokens, num_waits, suppressed_at, forced_end
    (max_think_tokens ended the thinking), tokens.

    The rows of one item share its prompt, so the sampler prefills each prompt once however many
    budgets and samples ride on it (per-row budgets); `batch_size` items are judged per sampler
    call. Sample k of an item draws the same random numbers at every budget (common random numbers),
    so `budgets=(0, 1)` and `budgets=(1,)` give the same budget-1 samples (bit for bit where the
    numerics do not depend on the batch, float32 on a CPU; on a GPU or in bfloat16 a near-tie can
    flip), and budgets differ only by what forcing did. That is also what lets the sampler decode
    all budgets of one sample as one row that forks where a smaller budget accepts its end of
    thinking, so a sweep costs about what its largest budget costs.

    logprob_verdict: each judgment also gets the constrained verdict (show_tokens.
    constrained_verdict: the template's option most probable after the judge's thinking and the
    answer prefix) as lp_verdict, lp_correct and lp (each option's log-probability)."""
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    if samples > 1 and temperature <= 0:
        raise ValueError("a majority vote over several samples needs --temperature > 0 (greedy "
                         "samples are equal)")
    # refuses what cannot be forced
    kw = forcing_kwargs(tok, max(budgets), max_think_tokens, wait_text, template)
    kw.pop("budget")
    orders = ("AB", "BA") if swap else ("AB",)
    out, memo = [], {}  # constrained verdicts by context: budgets that forced nothing share one
    bar = tqdm(total=len(items), desc="judging", disable=not progress, dynamic_ncols=True)
    for s in range(0, len(items), batch_size):
        rows, prompts, row_budgets, streams = [], [], [], []
        for i, it in enumerate(items[s:s + batch_size], s):
            for order in orders:
                a, b = (it["response_a"],
                        it["response_b"]) if order == "AB" else (it["response_b"], it["response_a"])
                prompt = encode_prompt(tok, it["question"], a, b, template)
                label = it.get("label")
                shown = label if order == "AB" or label is None else swap_label(label)
                for budget in budgets:
                    for k in range(samples):
                        rows.append({"item": i, "id": it.get("id"), "order": order,
                                     "budget": budget, "sample": k, "label": shown})
                        prompts.append(prompt)
                        row_budgets.append(budget)
                        streams.append(k)  # every budget of sample k draws the same random numbers
        gens = generate(model, prompts, max_new_tokens, temperature=temperature, seed=seed,
                        streams=streams, budget=row_budgets, **kw)
        for row, g, prompt in zip(rows, gens, prompts):
            text = completion_text(tok, g)
            verdict = judge_verdict(text, template)  # the template's verdict rule
            row.update(verdict=verdict, correct=verdict is not None and verdict == row["label"],
                       completion=text, think_tokens=g.think_tokens, num_waits=g.num_waits,
                       suppressed_at=g.suppressed_at, forced_end=g.forced_end, tokens=len(g.tokens))
            if logprob_verdict:
                key = (tuple(prompt), tuple(g.tokens[:g.answer_start] if g.answer_start is not None
                                            else g.tokens), g.answer_start is None)
                if key not in memo:
                    memo[key] = constrained_verdict(model, tok, prompt, g, template)
                v, lp = memo[key]
                row.update(lp_verdict=v, lp_correct=v == row["label"], lp=lp)
            out.append(row)
        bar.update(len(items[s:s + batch_size]))
    bar.close()
    return out


def constrained(judgments: list[dict]) -> list[dict]:
    """The judgments with their constrained verdicts (judge_pairs' logprob_verdict) as their
    verdicts, for score()."""
    return [{**j, "verdict": j["lp_verdict"], "correct": j["lp_correct"]} for j in judgments]


def majority(verdicts: list) -> str | None:
    """The most frequent parsed verdict of a sample set ("A", "B" or "tie"); None when none parsed
    or the two most frequent are equally frequent (self-consistency, Wang et al. 2023)."""
    top = Counter(v for v in verdicts if v is not None).most_common(2)
    if not top or (len(top) == 2 and top[0][1] == top[1][1]):
        return None
    return top[0][0]


def item_key(judgment: dict):
    """What identifies a judgment's item: its position ("item") where recorded, else its id. Ids are
    the data's and need not be unique (20 pairs sharing one id are 20 items); positions are."""
    return judgment["item"] if "item" in judgment else judgment["id"]


def shown_pair(items: list[dict], judgment: dict) -> tuple[str, str, str]:
    """(question, first response, second response) as `judgment` was shown them: items are the
    pairs judge.py read, judgment["item"] its line there, order "BA" the responses swapped. A
    judgment whose id is not its line's is refused: not the pairs it judged."""
    i = judgment["item"]
    if i >= len(items) or items[i]["id"] != judgment["id"]:
        raise ValueError(f"judgment of item {i} (id {judgment['id']!r}) does not match the "
                         f"{len(items)} pairs given: not the pairs it judged")
    it = items[i]
    a, b = (it["response_a"], it["response_b"])[::1 if judgment["order"] == "AB" else -1]
    return it["question"], a, b


def score(judgments: list[dict], ties: str = "wrong") -> dict:
    """Per budget: accuracy, its 95% interval, and the means a scaling table needs.

    An item-order's verdict is the majority over its samples (items told apart by item_key). Its
    score is 1 if right, 0 if wrong, and for no verdict or a tie verdict 0 (ties="wrong", the
    default) or 0.5 (ties="half", RewardBench's convention, under which a tie, or a judge cut off
    before its verdict, scores as a coin flip: report which was used).
    With both orders judged an item scores 1 only if both orders are right (JudgeBench's rule), 0 if
    either is wrong, else the no-verdict score. Interval: mean ± 1.96 · sd / sqrt(n) (normal
    approximation)."""
    if ties not in ("wrong", "half"):
        raise ValueError(f"ties must be 'wrong' or 'half', got {ties!r}")
    none_score = 0.5 if ties == "half" else 0.0
    table = {}
    for budget in sorted({j["budget"] for j in judgments}):
        rows = [j for j in judgments if j["budget"] == budget]
        groups: dict = {}
        for j in rows:
            groups.setdefault((item_key(j), j["order"]), []).append(j)
        per_order = {}
        for (item, order), js in groups.items():
            v = majority([j["verdict"] for j in js])
            per_order.setdefault(item, []).append(None if v in (None, TIE) else v == js[0]["label"])
        scores = []
        for results in per_order.values():
            scores.append(0.0 if False in results else 1.0 if all(results) else none_score)
        n = len(scores)
        mean = sum(scores) / n
        sd = math.sqrt(sum((x - mean) ** 2 for x in scores) / max(n - 1, 1))
        single = [j for j in rows if j["order"] == "AB" and j["sample"] == 0]
        by_label = {lab: [j["correct"] for j in single if j["label"] == lab] for lab in "AB"}
        table[budget] = {
            "budget": budget, "n": n, "accuracy": mean, "ci95": 1.96 * sd / math.sqrt(n),
            "no_verdict": sum(j["verdict"] is None for j in rows) / len(rows),
            "tie": sum(j["verdict"] == TIE for j in rows) / len(rows),
            "think_tokens": sum(j["think_tokens"] for j in rows) / len(rows),
            "tokens": sum(j["tokens"] for j in rows) / len(rows),
            "waits": sum(j["num_waits"] for j in rows) / len(rows),
            **{f"accuracy_label_{lab}": (sum(v) / len(v) if v else None)
               for lab, v in by_label.items()},
        }
    return table


def eval_accuracy(model, tok, records: list[dict], max_new_tokens: int, batch_size: int = 32,
                  budgets=(0,), max_think_tokens: int | None = None,
                  template=J1_MIN) -> dict[int, dict]:
    """Greedy verdict accuracy on `records` per budget (one forked sweep), split by the label's
    position (a position bias can look like learning), and the share of completions with no verdict:
    {budget: {...}}."""
    table = score(judge_pairs(model, tok, records, budgets=tuple(budgets),
                              max_new_tokens=max_new_tokens, max_think_tokens=max_think_tokens,
                              batch_size=batch_size, template=template))
    return {b: {k: r[k] for k in ("accuracy", "no_verdict", "n", "accuracy_label_A",
                                  "accuracy_label_B", "think_tokens")} for b, r in table.items()}
