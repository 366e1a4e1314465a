"""Scoring of judgments (majority vote, both orders, ties) and judging with per-row budgets."""
from __future__ import annotations

import pytest

from conftest import judge_tokenizer, planted_judge
from j1_min.evaluate import eval_accuracy, judge_pairs, majority, score
from j1_min.checkpoint import load_model


def j(id_, order, verdict, label, budget=0, sample=0):
    return {"id": id_, "order": order, "budget": budget, "sample": sample, "verdict": verdict,
            "label": label, "correct": verdict == label, "think_tokens": 10, "tokens": 12,
            "num_waits": budget}


def test_majority_needs_a_strict_winner():
    assert majority(["A", "A", "B"]) == "A"
    assert majority(["A", "B"]) is None and majority([None, None]) is None
    assert majority([None, "B", None]) == "B"


def test_a_pair_judged_in_both_orders_is_right_only_when_both_are():
    rows = [j(1, "AB", "A", "A"), j(1, "BA", "B", "B"),   # both right
            j(2, "AB", "A", "A"), j(2, "BA", "A", "B"),   # position bias: always A
            j(3, "AB", None, "B"), j(3, "BA", "A", "A")]  # one order unparseable
    assert score(rows)[0]["accuracy"] == pytest.approx(1 / 3)
    assert score(rows, ties="half")[0]["accuracy"] == pytest.approx((1 + 0 + 0.5) / 3)


def test_majority_vote_over_samples_decides_each_item():
    rows = [j(1, "AB", v, "A", sample=k) for k, v in enumerate("AAB")] + \
           [j(2, "AB", v, "B", sample=k) for k, v in enumerate("AAB")]
    t = score(rows)[0]
    assert t["accuracy"] == 0.5 and t["n"] == 2


def test_interval_is_the_normal_approximation():
    rows = [j(i, "AB", "A", "A" if i < 3 else "B") for i in range(4)]  # scores 1, 1, 1, 0
    t = score(rows)[0]
    assert t["accuracy"] == 0.75
    assert t["ci95"] == pytest.approx(1.96 * 0.5 / 2)  # sd of (1,1,1,0) with n-1 is 0.5; / sqrt(4)


@pytest.fixture(scope="module")
def judge_model(tmp_path_factory):
    items = [{"id": f"q{i}", "question": f"What is {i} + 1?",
              "response_a": f"The answer is {i + 1}.", "response_b": f"The answer is {i + 2}.",
              "label": "AB"[i % 2]} for i in range(6)]
    tok = judge_tokenizer(items)
    d = tmp_path_factory.mktemp("judge")
    # always answers [[A]]: a pure position bias
    planted_judge(tok, "A", strength=8.0).save_pretrained(d)
    return load_model(d)[0], tok, items


def test_eval_accuracy_reports_accuracy_by_label_position(judge_model):
    model, tok, items = judge_model
    m = eval_accuracy(model, tok, items, max_new_tokens=16, batch_size=4, max_think_tokens=0)[0]
    assert m["n"] == 6 and m["no_verdict"] == 0.0
    assert m["accuracy"] == 0.5 and m["accuracy_label_A"] == 1.0 and m["accuracy_label_B"] == 0.0


def test_swap_exposes_a_position_bias(judge_model):
    model, tok, items = judge_model
    rows = judge_pairs(model, tok, items, swap=True, max_new_tokens=16, max_think_tokens=0)
    assert len(rows) == 12 and {r["order"] for r in rows} == {"AB", "BA"}
    assert all(r["verdict"] == "A" for r in rows)
    assert score(rows)[0]["accuracy"] == 0.0  # every pair is wrong in one of its orders


def test_budgets_in_one_call_equal_separate_calls(judge_model):
    model, tok, items = judge_model
    kw = dict(max_new_tokens=24, max_think_tokens=12, batch_size=4)
    together = judge_pairs(model, tok, items, budgets=(0, 1, 2), **kw)
    for b in (0, 1, 2):
        alone = judge_pairs(model, tok, items, budgets=(b,), **kw)
        mine = [r for r in together if r["budget"] == b]
        assert [r["completion"] for r in mine] == [r["completion"] for r in alone]
        assert [r["num_waits"] for r in mine] == [r["num_waits"] for r in alone]
        # it tries to stop at once, then rambles after Wait
        assert max(r["num_waits"] for r in mine) == min(b, 1)


def test_a_samples_by_budgets_grid_forks_and_each_cell_equals_its_own_call(judge_model):
    """Parallel x sequential scaling: K samples at several budgets in one call, sample k of every
    budget on stream k (so each sample's budgets fork from one row), equal the same samples judged
    one budget at a time. Exact because the model runs in float32 on a CPU, where a batch of other
    rows does not change a row's numerics; on a GPU or in bfloat16 a near-tie could flip."""
    model, tok, items = judge_model
    kw = dict(max_new_tokens=24, max_think_tokens=12, batch_size=4, samples=3, temperature=1.0,
              seed=7, swap=True)
    together = judge_pairs(model, tok, items, budgets=(0, 1, 2), **kw)
    for b in (0, 1, 2):
        alone = judge_pairs(model, tok, items, budgets=(b,), **kw)
        mine = [r for r in together if r["budget"] == b]
        assert [(r["item"], r["order"], r["sample"], r["completion"]) for r in mine] == \
               [(r["item"], r["order"], r["sample"], r["completion"]) for r in alone]
    assert len({r["completion"] for r in together if r["budget"] == 2}) > 1  # the samples differ


def test_samples_without_temperature_is_refused(judge_model):
    model, tok, items = judge_model
    with pytest.raises(ValueError, match="temperature"):
        judge_pairs(model, tok, items, samples=3)


def test_every_budget_of_a_sample_draws_the_same_random_numbers(judge_model):
    """Common random numbers: budget 1 sampled alongside budget 0 equals budget 1 sampled alone
    (exactly, in float32 on a CPU: see test_a_samples_by_budgets_grid_forks_...)."""
    model, tok, items = judge_model
    kw = dict(temperature=1.0, seed=3, max_new_tokens=24, max_think_tokens=12, samples=2)
    both = [r for r in judge_pairs(model, tok, items, budgets=(0, 1), **kw) if r["budget"] == 1]
    alone = judge_pairs(model, tok, items, budgets=(1,), **kw)
    assert [r["completion"] for r in both] == [r["completion"] for r in alone]
