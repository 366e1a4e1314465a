"""judge.py --verdict logprob: the constrained verdict is the template's option with the highest
log-probability after the judge's thinking and the answer prefix (j1_min/show_tokens.py)."""
from __future__ import annotations

import torch

from conftest import TRACES
from j1_min import templates
from j1_min.evaluate import constrained, judge_pairs, score
from j1_min.judge_format import forcing_kwargs
from j1_min.sampling import Generation, generate
from j1_min.show_tokens import constrained_verdict, option_logprobs


def full_logprob(model, context, option):
    """log p(option | context) from one full forward over context + option, no cache."""
    with torch.no_grad():
        logp = model(torch.tensor([context + option]))[0].log_softmax(-1)  # (T, V)
    return sum(float(logp[len(context) - 1 + k, t]) for k, t in enumerate(option))


def test_option_logprobs_equal_a_full_forward_for_options_of_different_lengths(judge):
    model, tok = judge
    context = tok.encode(TRACES[0][0], allow_special=True)
    options = {"A": tok.encode("A]]"), "B": tok.encode("B 52: no."), "tie": tok.encode("C")}
    assert len({len(o) for o in options.values()}) > 1
    got = option_logprobs(model, context, options)
    for name, ids in options.items():
        assert abs(got[name] - full_logprob(model, context, ids)) < 1e-4, name


def test_the_constrained_verdict_reads_the_judges_own_verdict_after_its_thinking(judge):
    """The overfit judge writes [[A]] right after TRACES[0]'s thinking: scored after that thinking
    and the answer prefix, A is the most probable option. TRACES[1]'s thinking leads to [[B]] (after
    a blank line the template's prefix does not have, so only the direction is asserted there): B
    gains against A relative to TRACES[0]."""
    model, tok = judge
    template = templates.load("j1_min")
    margins = []
    for i in (0, 1):
        prompt = tok.encode(TRACES[i][0], allow_special=True)
        g = generate(model, [prompt], 70, **forcing_kwargs(tok, 0))[0]
        assert g.answer_start is not None
        v, lp = constrained_verdict(model, tok, prompt, g, template)
        assert set(lp) == {"A", "B"} and v == max(lp, key=lp.get)
        margins.append(lp["B"] - lp["A"])
        if i == 0:
            assert v == "A"
    assert margins[1] > margins[0] + 1.0


def test_a_trace_that_never_closed_its_thinking_gets_the_marker_and_prefix_forced(judge):
    """Context: the whole trace, a line break, the end marker, the answer prefix; options: the
    patterns' rest after the prefix."""
    model, tok = judge
    template = templates.load("j1_min")
    prompt = tok.encode(TRACES[0][0], allow_special=True)
    thinking = tok.encode("A 42: yes.\nB 52: no.\nSo A is right.")
    _, lp = constrained_verdict(model, tok, prompt, Generation(tokens=thinking), template)
    cut = next(n for n in range(len(template.answer_prefix), -1, -1)
               if "[[A]]".startswith(template.answer_prefix[len(template.answer_prefix) - n:]))
    context = prompt + thinking + tok.encode("\n") + tok.marker_ids("</think>") + tok.encode(
        template.answer_prefix)
    for x in "AB":
        want = full_logprob(model, context, tok.encode(f"[[{x}]]"[cut:]))
        assert abs(lp[x] - want) < 1e-4


def test_judge_pairs_scores_constrained_verdicts_that_always_exist(judge):
    """A cap so short that no free-form verdict is written: no-verdict is 100% free-form and 0%
    constrained, and the constrained verdicts are right on the overfit traces."""
    model, tok = judge
    items = [{"id": str(i), "question": "q", "response_a": "a", "response_b": "b", "label": "A"}
             for i in range(2)]
    short = templates.parse({**templates.load("j1_min").to_dict(), "system": "",
                             "user": "{question}{response_a}{response_b}"}, "short")
    js = judge_pairs(model, tok, items, budgets=(0, 1), max_new_tokens=3, logprob_verdict=True,
                     template=short)
    assert all(j["verdict"] is None and j["lp_verdict"] in ("A", "B") for j in js)
    free, lp = score(js), score(constrained(js))
    assert all(r["no_verdict"] == 1.0 for r in free.values())
    assert all(r["no_verdict"] == 0.0 for r in lp.values())
    assert all(lp[b]["accuracy"] == sum(j["lp_correct"] for j in js if j["budget"] == b) / 2
               for b in (0, 1))
