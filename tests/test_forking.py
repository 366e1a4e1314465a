"""Forking (forcing.Row, sampling.generate): the rows of one prompt and random stream at budgets
0..B are decoded as one row that forks at each smaller budget's end of thinking. Each budget's
result must be exactly what a call at that budget alone returns, and the sweep must decode about
what its longest budget decodes.

The exactness rests on numerics that do not depend on the batch: float32 on a CPU, where these tests
run (require_float32_cpu skips them elsewhere). The sweep and a one-budget call decode batches of
different sizes with differently padded prefills; on a GPU or in bfloat16 their kernels may reduce
in another order, a near-tie between two tokens can flip, and the two can part from there."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from conftest import TRACES, TableTokenizer
from test_sampling import V
from test_sampling import model, pair, saved  # noqa: F401  (fixtures)
from j1_min.judge_format import forcing_kwargs
from j1_min.sampling import generate

BUDGETS = [0, 1, 2, 3]


def require_float32_cpu(model):
    """Skip unless the model runs in float32 on a CPU: the only setting where a batch of other rows
    leaves each row's tokens bit for bit unchanged."""
    p = next(model.parameters())
    if p.dtype != torch.float32 or p.device.type != "cpu":
        pytest.skip(f"exactness across batch sizes holds in float32 on a CPU, not {p.dtype} on "
                    f"{p.device.type}")


def assert_same(swept, alone):
    """Field by field; log-probs to float rounding (a batch of other rows changes how the matmuls
    are blocked)."""
    for s, a in zip(swept, alone):
        s, a = dataclasses.asdict(s), dataclasses.asdict(a)
        assert s.pop("logprobs") == pytest.approx(a.pop("logprobs"), rel=1e-5, abs=1e-5)
        assert s == a


def sweep_and_alone(model, prompts, max_new, **kw):
    """(the sweep's Generations, each budget's own call), for every prompt x budget, sample k =
    stream k."""
    require_float32_cpu(model)
    rows = [(p, b) for p in prompts for b in BUDGETS]
    swept = generate(model, [p for p, _ in rows], max_new, budget=[b for _, b in rows],
                     streams=[0] * len(rows), **kw)
    alone = [generate(model, [p], max_new, budget=b, streams=[0], **kw)[0] for p, b in rows]
    return swept, alone


@pytest.mark.parametrize("temperature", [0.0, 1.0])
@pytest.mark.parametrize("cap", [None, 14])
def test_each_budget_of_a_forked_sweep_is_exactly_its_own_call(judge, temperature, cap):
    """On J1-7B's tokenizer family (a marker of several tokens, fused with text) and Qwen3's (one
    added token), greedy and sampled, with and without the thinking cap; TRACES[2] ends its turn
    without closing its thinking."""
    model, tok = judge
    prompts = [tok.encode(p, allow_special=True) for p, _ in TRACES]
    kw = {**forcing_kwargs(tok, 0, cap), "temperature": temperature, "seed": 3}
    kw.pop("budget")
    swept, alone = sweep_and_alone(model, prompts, 70, **kw)
    assert_same(swept, alone)
    assert {g.num_waits for g in swept} >= {0, 1}  # forks were taken, not only the leader's path


@pytest.mark.parametrize("end", [(7,), (7, 8)])
def test_a_sampled_random_model_forks_exactly_with_stops_and_markers_of_one_or_two_tokens(
        model, end):
    """A random model at temperature 1.2 over many prompts: stops sampled while thinking, markers of
    one or two tokens, the cap; every budget's row equals its own call, field by field."""
    tok = TableTokenizer(V)
    kw = dict(tokenizer=tok, think_end=tok.c(*end), wait=tok.c(50, 51), answer_prefix=tok.c(60),
              stop_ids=[9, 11], max_think_tokens=40, temperature=1.2, seed=0)
    prompts = [[1 + i, 2, 3] for i in range(12)]
    swept, alone = sweep_and_alone(model, prompts, 60, **kw)
    assert_same(swept, alone)
    assert sum(g.num_waits for g in swept) >= 12


def test_a_sweep_decodes_its_longest_budget_and_the_smaller_budgets_answers(judge):
    """Decoded row-steps (one token of one row through the model) of a budget 0-3 sweep: the
    budget-3 row's tokens plus, for each smaller budget, the tokens it writes after its accepted end
    of thinking, not four whole rows."""
    model, tok = judge
    steps = []
    forward = model.hidden_states

    def counting(x, cache=None):
        if cache is not None and x.shape[1] == 1:
            steps.append(x.shape[0])
        return forward(x, cache)

    require_float32_cpu(model)
    prompt = tok.encode(TRACES[0][0], allow_special=True)
    kw = forcing_kwargs(tok, 0)
    kw.pop("budget")
    model.hidden_states = counting
    try:
        gens = generate(model, [prompt] * 4, 70, budget=BUDGETS, **kw)
        swept = sum(steps)
        steps.clear()
        alone = [generate(model, [prompt], 70, budget=b, **kw)[0] for b in BUDGETS]
        separate = sum(steps)
    finally:
        del model.hidden_states
    answers = sum(len(g.tokens) - g.think_tokens for g in gens[:3])
    assert [g.tokens for g in gens] == [g.tokens for g in alone]
    assert swept <= len(gens[3].tokens) + answers
    assert separate > 1.8 * swept
