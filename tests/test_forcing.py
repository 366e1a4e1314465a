"""s1 budget forcing (j1_min/forcing.py through sampling.generate): the end of thinking is found in
the text however the tokenizer splits it, each of s1's rules holds, the KV cache stays right through
every roll-back, and the cached sampler writes what s1's own loop, written out below with full
forwards, writes."""
from __future__ import annotations

import pytest
import torch

from conftest import TRACES, TableTokenizer
from test_sampling import V, recompute_logits
from test_sampling import flat, model, pair, saved  # noqa: F401  (fixtures)
from j1_min.forcing import marker
from j1_min.judge_format import ANSWER_PREFIX, THINK_END, forcing_kwargs, parse_verdict
from j1_min.sampling import generate

T_, F_ = True, False
TOK = TableTokenizer(V)  # id i is one character; 9 is a line break
C = TOK.c


def forced(budget, end=0, wait=(5, 6), **kw):
    """Budget-forcing keyword arguments for the stand-in vocabulary: marker = the text of `end`
    (ids)."""
    end = end if isinstance(end, tuple) else (end,)
    return dict(tokenizer=TOK, think_end=C(*end), wait=C(*wait), budget=budget, **kw)


# ------------------------------------------------------------------------------------------------
# the rules, one by one `flat` gives every token the same logit, so greedy takes the lowest id it
# may: 0, or 1 when 0 is banned.

def test_each_suppressed_end_is_replaced_by_wait_and_a_new_token_follows_it(flat):
    g = generate(flat, [[1, 2]], 12, **forced(3))[0]
    # after each Wait, 0 (the marker) is banned once
    assert g.tokens[:10] == [5, 6, 1, 5, 6, 1, 5, 6, 1, 0]
    assert g.forced[:10] == [T_, T_, F_] * 3 + [F_]
    assert g.num_waits == 3 and g.suppressed_at == [0, 3, 6] and g.removed == [C(0)] * 3
    assert g.think_tokens == 9 and g.answer_start == 10 and not g.forced_end


def test_a_marker_of_several_tokens_is_rolled_back_whole(flat):
    g = generate(flat, [[1, 2]], 14, **forced(3, end=(0, 0)))[0]
    # the first 0 of each marker left .tokens too
    assert g.tokens[:11] == [5, 6, 1, 5, 6, 1, 5, 6, 1, 0, 0]
    assert g.num_waits == 3 and g.think_tokens == 9 and g.answer_start == 11


def test_a_stop_while_thinking_is_an_end_of_thinking(flat):
    g = generate(flat, [[1]], 10, stop_ids=[0], **forced(2, end=7))[0]
    # two stops became Waits; the third, the marker
    assert g.tokens == [5, 6, 1, 5, 6, 1, 7, 0] and g.stopped
    assert g.forced == [T_, T_, F_, T_, T_, F_, T_, F_]
    assert g.num_waits == 2 and g.removed == [
        C(0)] * 2 and g.think_tokens == 6 and g.answer_start == 7
    g = generate(flat, [[1]], 10, stop_ids=[0], **forced(0, end=7))[0]
    assert g.tokens == [7, 0] and g.forced == [T_,
                                               F_] and g.answer_start == 1 and g.think_tokens == 0


def test_without_think_end_a_stop_just_stops(flat):
    g = generate(flat, [[1]], 10, stop_ids=[0])[0]
    assert g.tokens == [0] and g.stopped and g.answer_start == 0


def test_the_cap_never_cuts_a_forced_wait_and_forces_a_newline_before_the_marker(flat):
    # the cap of 1 falls inside the first "Wait" (5, 6): the Wait is finished, then "\n" + marker +
    # answer prefix
    g = generate(flat, [[1, 2]], 12, **forced(5, max_think_tokens=1, answer_prefix=C(8)))[0]
    assert g.tokens[:6] == [5, 6, 9, 0, 8, 0] and g.forced[:5] == [T_] * 5
    assert g.num_waits == 1 and g.forced_end and g.think_tokens == 2 and g.answer_start == 4


def test_the_cap_adds_no_newline_after_one(flat):
    tok = TableTokenizer(V, {0: "\n", 9: "\t"})  # the flat model's own token is now a line break
    g = generate(flat, [[1, 2]], 8, tokenizer=tok, think_end=tok.c(7), max_think_tokens=2,
                 answer_prefix=tok.c(8))[0]
    assert g.tokens[:4] == [0, 0, 7, 8] and g.forced[:4] == [F_, F_, T_, T_] and g.answer_start == 3
    g = generate(flat, [[1, 2]], 8, **forced(0, end=7, max_think_tokens=2, answer_prefix=C(8)))[0]
    assert g.tokens[:5] == [0, 0, 9, 7, 8] and g.answer_start == 4  # 0 is not a line break in TOK


def test_max_new_tokens_counts_forced_tokens_and_cuts_a_forced_sequence(flat):
    g = generate(flat, [[1, 2]], 3, **forced(3))[0]
    assert g.tokens == [5, 6, 1] and g.answer_start is None and g.think_tokens == 3
    g = generate(flat, [[1, 2]], 6, **forced(0, end=7, max_think_tokens=4, answer_prefix=C(8)))[0]
    assert g.tokens == [0, 0, 0, 0, 9, 7] and g.answer_start == 6


def test_per_row_budgets_are_independent(flat):
    p = [1, 2]
    kw = forced(0)
    kw.pop("budget")
    batch = generate(flat, [p, p, p, [3]], 12, budget=[0, 2, 1, 3], **kw)
    assert [g.num_waits for g in batch] == [0, 2, 1, 3]
    assert batch[1].tokens[:7] == [5, 6, 1, 5, 6, 1, 0]
    for prompt, b, g in zip([p, p, p, [3]], [0, 2, 1, 3], batch):
        assert generate(flat, [prompt], 12, budget=b, **kw)[0] == g


def test_forced_tokens_are_never_stops_and_stops_are_banned_right_after_a_wait(flat):
    g = generate(flat, [[1]], 8, stop_ids=[5], **forced(1))[0]  # "Wait" (5, 6) holds the stop id 5
    assert g.tokens[:4] == [5, 6, 1, 0] and g.forced[:4] == [T_, T_, F_, F_] and not g.stopped
    # after a Wait, 0 (marker) and 1 (stop) are banned
    g = generate(flat, [[1]], 8, stop_ids=[1], **forced(1))[0]
    assert g.tokens[:4] == [5, 6, 2, 0] and g.answer_start == 4


def test_common_random_numbers_budgets_of_one_stream_agree_until_the_first_end(model):
    tok = TableTokenizer(V)
    plain = generate(model, [[3, 4, 5]], 30, temperature=1.0, seed=5)[0].tokens
    end = plain[6]  # a token the row samples at step 6: make it the marker
    w = [t for t in (50, 51, 52) if t != end][:2]
    kw = dict(tokenizer=tok, think_end=tok.c(end), wait=tok.c(*w), temperature=1.0, seed=5)
    a, b = generate(model, [[3, 4, 5]] * 2, 30, budget=[0, 1], streams=[0, 0], **kw)
    first = plain.index(end)
    assert a.tokens[:first + 1] == plain[:first + 1] and b.tokens[:first] == plain[:first]
    assert b.tokens[first:first + 2] == w
    # default streams: repeats differ
    c, d = generate(model, [[3, 4, 5]] * 2, 30, budget=[1, 1], **kw)
    assert c.tokens != d.tokens


# ------------------------------------------------------------------------------------------------
# the text-level marker

FUSED = TableTokenizer(V, {10: "So", 11: " B", 12: ".</", 13: "think", 14: ">\n", 15: ">\n\n",
                           16: "</think>", 17: "x</think>", 18: "</", 19: ">", 20: "think>"})


@pytest.mark.parametrize("tokens,new,want", [
    ([10, 11, 12, 13], 14, (2, ".", "</think>\n")),        # '.</' fused before, '>\n' fused after
    ([10, 11, 12, 13], 15, (2, ".", "</think>\n\n")),
    ([10, 11, 18], 20, (1, "", "</think>")),
    ([10, 11], 16, (0, "", "</think>")),                  # one added token
    ([10], 17, (0, "x", "</think>")),                     # text before the marker inside its token
    ([10, 11, 18, 13], 11, None),                          # no marker (yet)
])
def test_marker_cut_finds_the_marker_however_it_is_split(tokens, new, want):
    m = marker(FUSED, "</think>", FUSED.c(50), "")
    assert m.cut(tokens, new) == want
    assert {14, 15, 16, 17, 19, 20} <= m.closers and 12 not in m.closers
    assert {16, 18} <= set(m.openers) and not {12, 13, 17, 20} & set(m.openers)


def test_a_fused_marker_leaves_no_trace_and_its_text_before_is_refed(model):
    """A real model, a marker it writes as '.</' 'think' '>\\n': after the roll-back, every sampled
    token is still the greedy choice given the final visible tokens (a stale cache entry would
    change the continuation)."""
    p = [40, 7]
    plain = generate(model, [p], 30)[0].tokens
    # distinct tokens to rename
    assert len(set(plain[:6])) == 6 and not {50, 51, 70, 80, 81} & set(plain[:6])
    names = {plain[3]: ".</", plain[4]: "think", plain[5]: ">\n"}
    # 80, 81: the tokenizer can write the marker
    tok = TableTokenizer(V, {**names, 70: ".", 80: "</", 81: ">"})
    g = generate(model, [p], 30, tokenizer=tok, think_end="</think>", wait=tok.c(50, 51),
                 budget=1)[0]
    assert g.suppressed_at == [4] and g.removed == ["</think>\n"]
    # "." re-fed, then Wait
    assert g.tokens[:6] == plain[:3] + [70, 50, 51] and g.forced[3:6] == [T_, T_, T_]
    check_cached_equals_recompute(model, p, g, 2,
                                  set(marker(tok, "</think>", tok.c(50, 51), "").openers))


def check_cached_equals_recompute(model, prompt, g, wait_len, banned_after_wait):
    """Every sampled token is the argmax of a full forward over the prompt and the tokens before it
    (with the first token after each forced "Wait", of wait_len tokens, taken among the tokens not
    banned)."""
    logits = recompute_logits(model, prompt, g.tokens)
    after = {i + wait_len for i in g.suppressed_at}
    for i, (t, f) in enumerate(zip(g.tokens, g.forced)):
        if not f:
            row = logits[i].clone()
            if i in after:
                row[list(banned_after_wait)] = float("-inf")
            assert int(row.argmax()) == t, i


# ------------------------------------------------------------------------------------------------
# real tokenizers

def prompt_of(tok, i):
    return tok.encode(TRACES[i][0], allow_special=True)


def test_the_overfit_trace_is_forced_once_at_budget_1_and_twice_at_budget_2(judge):
    model, tok = judge
    p = prompt_of(tok, 0)
    plain = generate(model, [p], 80, **forcing_kwargs(tok, 0))[0]
    # the trace, unchanged, with its '.</' 'think' '>\n'
    assert tok.decode(plain.tokens) == TRACES[0][1]
    for budget in (1, 2):
        g = generate(model, [p], 80, **forcing_kwargs(tok, budget))[0]
        text = tok.decode(g.tokens)
        assert g.num_waits == budget and text.count("Wait") == budget
        last_wait = len(tok.decode(g.tokens[:g.suppressed_at[-1]]))
        assert THINK_END not in text[:last_wait]  # nothing of a suppressed marker is left
        assert parse_verdict(text) is not None
        banned = {tok.eos_id} | set(marker(tok, THINK_END, "Wait", ANSWER_PREFIX).openers)
        check_cached_equals_recompute(model, p, g, len(tok.encode("Wait")), banned)


def s1_loop(model, tok, prompt, budget, max_new, cap=None):
    """s1's thinking_n_ignore loop in its own style, one phase at a time, with a full forward for
    every token and no cache: think until the text holds `</think>` or a stop is sampled; cut the
    tokens where the marker starts (the text before it in the token that holds its start is
    re-encoded); append Wait; think again, the first token not a stop nor a marker opener
    (min_tokens=1). Then the marker (after a stop) or s1's length path, and the answer."""
    stop, wait = {tok.eos_id}, tok.encode("Wait")
    openers = set(marker(tok, THINK_END, "Wait", ANSWER_PREFIX).openers)

    def greedy(out, ban=()):
        logits = model(torch.tensor([prompt + out]))[0, -1]
        logits[list(ban)] = float("-inf")
        return int(logits.argmax())

    out, waits, end = [], 0, None
    while end is None:
        first = waits > 0
        while len(out) < max_new:
            if cap is not None and len(out) >= cap:
                end = "length"
                break
            t = greedy(out, stop | openers if first else ())
            first = False
            if t in stop:
                end = "stop"
                break
            out.append(t)
            if THINK_END in tok.decode(out):
                end = "marker"
                break
        if end is None:
            return out  # thinking ran into max_new
        if end != "length" and waits < budget:
            if end == "marker":
                text = tok.decode(out)
                head = text[:text.index(THINK_END)]
                k = max(k for k in range(len(out) + 1) if head.startswith(tok.decode(out[:k])))
                out = out[:k] + (tok.encode(head[len(tok.decode(out[:k])):], allow_special=True))
            out, waits, end = out + wait, waits + 1, None
    if end == "length":
        nl = [] if not out or tok.decode(out[-1:]).endswith("\n") else tok.encode("\n")
        out += nl + tok.encode(THINK_END, allow_special=True) + tok.encode(ANSWER_PREFIX)
    elif end == "stop":
        out += tok.encode(THINK_END, allow_special=True)
    while len(out) < max_new:
        t = greedy(out)
        out.append(t)
        if t in stop:
            break
    return out[:max_new]


@pytest.mark.parametrize("cap", [None, 14])
def test_the_cached_sampler_writes_what_s1s_own_loop_writes(judge, cap):
    model, tok = judge
    with torch.no_grad():
        for i in range(len(TRACES)):
            p = prompt_of(tok, i)
            gens = generate(model, [p] * 4, 70,
                            **{**forcing_kwargs(tok, 0, cap), "budget": [0, 1, 2, 3]})
            for budget, g in enumerate(gens):
                ref = s1_loop(model, tok, p, budget, 70, cap)
                assert tok.decode(g.tokens) == tok.decode(ref), (i, budget)
                assert g.tokens == ref


def test_parser_and_sampler_agree_where_thinking_ends(judge):
    """The verdict is read after the first `</think>` of the text; that is the marker the sampler
    accepted or forced, never one it suppressed, and a row that never ended its thinking has
    none."""
    model, tok = judge
    prompts = [prompt_of(tok, i) for i in range(len(TRACES)) for _ in range(4)]
    gens = generate(model, prompts, 60, temperature=1.0, seed=0,
                    **{**forcing_kwargs(tok, 0, 30), "budget": [0, 1, 2, 3] * len(TRACES)})
    ended = 0
    for g in gens:
        text = tok.decode(g.tokens)
        if g.answer_start is None:
            assert THINK_END not in text
            continue
        ended += 1
        head = tok.decode(g.tokens[:g.answer_start])
        assert head.count(THINK_END) == 1 and text.find(THINK_END) == head.find(THINK_END)
    assert ended >= len(gens) // 2
