"""The sampling engine: greedy equals transformers and a full recompute, rows are independent of
their batch, s1 budget forcing produces exactly the specified sequences, and sampling draws from the
processed distribution."""
from __future__ import annotations

import math

import pytest
import torch

from conftest import TableTokenizer
from j1_min.logprobs import token_logprobs
from j1_min.sampling import Generation, generate, process_logits, sample
from j1_min.checkpoint import load_model

torch.set_num_threads(2)

V = 96


def _hf_tiny(vocab=V, std=0.3, seed=0):
    """A random tiny transformers Qwen2 with large weights (std 0.3, norms 1 + noise), so greedy is
    not degenerate."""
    import transformers as T
    cfg = T.Qwen2Config(vocab_size=vocab, hidden_size=64, intermediate_size=128,
                        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                        max_position_embeddings=128)
    torch.manual_seed(seed)
    hf = T.Qwen2ForCausalLM(cfg).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in hf.named_parameters():
            p.copy_((1.0 if name.endswith("norm.weight") else 0.0) + std
                    * torch.randn(p.shape, generator=gen))
    return hf


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """(transformers model, the folder it was saved to)."""
    hf = _hf_tiny()
    d = tmp_path_factory.mktemp("tiny")
    hf.save_pretrained(d)
    return hf, d


@pytest.fixture(scope="module")
def pair(saved):
    """(transformers model, our model loaded from its save_pretrained folder)."""
    return saved[0], load_model(saved[1])[0]


@pytest.fixture(scope="module")
def model(pair):
    return pair[1]


@pytest.fixture(scope="module")
def flat(tmp_path_factory):
    """A deterministic model: final norm weight 0, so every logit is 0 and greedy always picks token
    0."""
    hf = _hf_tiny(seed=1)
    d = tmp_path_factory.mktemp("flat")
    hf.save_pretrained(d)
    m = load_model(d)[0]
    with torch.no_grad():
        m.model.norm.weight.zero_()
    return m


PROMPTS = [[1, 2, 3], list(range(10, 27)), [40, 7], list(range(30, 60)), [1, 2, 3],
           [9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 11]]


def recompute_logits(model, prompt, tokens):
    """Logits predicting each of `tokens` from one uncached forward over prompt + tokens:
    (len(tokens), V)."""
    with torch.no_grad():
        return model(torch.tensor([prompt + tokens]))[0, len(prompt) - 1:-1]


# ------------------------------------------------------------------------------------------------
# greedy


def test_greedy_matches_transformers_generate_per_row(pair):
    import transformers as T
    hf, ours = pair
    got = generate(ours, PROMPTS, 48)
    gc = T.GenerationConfig(do_sample=False, max_new_tokens=48, eos_token_id=None, pad_token_id=0)
    for p, g in zip(PROMPTS, got):
        # (a prompt holds token 0 = pad_token_id: pass the mask, or transformers masks it)
        x = torch.tensor([p])
        ref = hf.generate(x, attention_mask=torch.ones_like(x),
                          generation_config=gc)[0, len(p):].tolist()
        assert len(set(ref)) >= 5  # a non-degenerate continuation, so the comparison has teeth
        assert g.tokens == ref
        assert g.forced == [False] * 48 and len(g.logprobs) == 48


def test_cached_decode_equals_full_recompute_every_step(model):
    got = generate(model, PROMPTS[:4], 40)
    for p, g in zip(PROMPTS[:4], got):
        seq = list(p)
        for _ in range(40):
            with torch.no_grad():
                seq.append(int(model(torch.tensor([seq]))[0, -1].argmax()))
        assert g.tokens == seq[len(p):]


def test_row_output_does_not_depend_on_batch_composition(model):
    stop = [0]  # a stop that ends some rows early, so finished rows get dropped from the batch
    for kw in (dict(), dict(temperature=1.0, top_k=30, seed=3)):
        batch = generate(model, PROMPTS, 40, stop_ids=stop, **kw)
        assert len({len(g.tokens) for g in batch}) > 1  # rows really finished at different steps
        for i in (0, 1, 3, 5):
            alone = generate(model, [PROMPTS[i]], 40, stop_ids=stop, **kw)[0]
            assert alone.tokens == batch[i].tokens and alone.stopped == batch[i].stopped
        shuffled = generate(model, [PROMPTS[5], PROMPTS[3], PROMPTS[0]], 40, stop_ids=stop, **kw)
        assert [g.tokens for g in shuffled] == [batch[5].tokens, batch[3].tokens, batch[0].tokens]


def test_identical_prompts_are_prefilled_once_and_copied(model, monkeypatch):
    sizes = []
    real = model.hidden_states
    monkeypatch.setattr(model, "hidden_states",
                        lambda x, cache=None: (sizes.append(x.shape), real(x, cache))[1])
    a, b = PROMPTS[1], PROMPTS[3]
    out = generate(model, [a, a, b, a], 6, temperature=1.0, seed=0)
    # one prefill row per distinct prompt, right-padded to the longest
    assert sizes[0] == (2, len(b))
    assert all(s[1] == 1 for s in sizes[1:]) and sizes[1][0] == 4  # then one token per row per step
    monkeypatch.undo()
    # repeats get their own random streams
    assert out[0].tokens != out[1].tokens or out[1].tokens != out[3].tokens
    assert generate(model, [a, a, b, a], 6)[0].tokens == generate(model, [a], 6)[0].tokens


def test_long_prompts_prefilled_in_chunks_give_the_same_tokens(model, monkeypatch):
    import j1_min.sampling as S
    whole = generate(model, PROMPTS, 20)
    monkeypatch.setattr(S, "PREFILL_CHUNK", 4)  # prompts of 2..30 tokens now take 1..8 chunks
    chunked = generate(model, PROMPTS, 20)
    assert [g.tokens for g in chunked] == [g.tokens for g in whole]
    assert max(abs(a - b) for c, w in zip(chunked, whole)
               for a, b in zip(c.logprobs, w.logprobs)) < 1e-4


# ------------------------------------------------------------------------------------------------
# sampling


def test_same_seed_reproduces_and_another_seed_differs(model):
    kw = dict(temperature=1.0, top_p=0.95)
    a = generate(model, PROMPTS, 24, seed=7, **kw)
    assert generate(model, PROMPTS, 24, seed=7, **kw) == a
    assert [g.tokens for g in generate(model, PROMPTS, 24, seed=8, **kw)] != [g.tokens for g in a]


def test_logprobs_are_under_the_temperature_alone_not_the_nucleus(model):
    kw = dict(temperature=0.7, top_k=20, top_p=0.9)
    tok = TableTokenizer(V)
    gens = generate(model, PROMPTS[:3], 30, seed=1, tokenizer=tok, think_end=tok.c(95),
                    max_think_tokens=12, answer_prefix=tok.c(90), **kw)
    for p, g in zip(PROMPTS[:3], gens):
        assert g.forced_end and g.forced[12] and g.logprobs[12:14] == [0.0, 0.0]
        logits = recompute_logits(model, p, g.tokens)  # (n, V)
        ref = (logits / 0.7).log_softmax(-1).gather(-1, torch.tensor(g.tokens)[:, None]).squeeze(-1)
        for i, f in enumerate(g.forced):
            if not f:
                assert g.logprobs[i] == pytest.approx(float(ref[i]), abs=1e-4)
    # a one-token nucleus: renormalised it would be log p = 0 (no gradient); the sampler reports the
    # real one
    g = generate(model, PROMPTS[:1], 6, temperature=1.0, top_p=1e-6, seed=0)[0]
    assert all(lp < -1e-3 for lp in g.logprobs)


def test_selected_logprobs_equal_full_logits_in_chunks_with_the_same_gradient(model):
    from j1_min.logprobs import selected_logprobs
    kw = dict(temperature=0.8)
    inp = torch.randint(0, V, (3, 21), generator=torch.Generator().manual_seed(4))
    tgt = model(inp).argmax(-1).detach()
    w = model.lm_head.weight
    ref = token_logprobs(model(inp), tgt, **kw)
    (g_ref,) = torch.autograd.grad(ref.sum(), w)
    # 21 positions in chunks of 4 (the last is short)
    got = selected_logprobs(model, inp, tgt, chunk=4, **kw)
    (g_got,) = torch.autograd.grad(got.sum(), w)
    assert got.shape == (3, 21) and torch.allclose(got, ref, atol=1e-5) and torch.allclose(
        g_got, g_ref, atol=1e-4)
    with torch.no_grad():
        assert torch.allclose(selected_logprobs(model, inp, tgt, chunk=5, **kw), ref, atol=1e-5)


def test_process_logits_follows_transformers_warpers():
    from transformers.generation.logits_process import (TemperatureLogitsWarper, TopKLogitsWarper,
                                                        TopPLogitsWarper)
    x = torch.randn(5, 50, generator=torch.Generator().manual_seed(0)) * 3
    ids = torch.zeros(5, 1, dtype=torch.long)
    ref = TopPLogitsWarper(0.8)(ids,
                                TopKLogitsWarper(10)(ids, TemperatureLogitsWarper(0.6)(ids, x)))
    assert torch.equal(process_logits(x, 0.6, 10, 0.8), ref)
    assert torch.equal(process_logits(x, 0.0), x)  # greedy leaves logits unscaled
    tiny_p = process_logits(x, 1.0, 0, 1e-9)  # top-p always keeps the most likely token
    assert torch.equal(tiny_p, TopPLogitsWarper(1e-9)(ids, x))
    assert torch.equal(tiny_p.isfinite().nonzero()[:, 1], x.argmax(-1))


def chi2_critical(df, z=3.72):
    """Wilson-Hilferty upper quantile of chi-square(df); z=3.72 is p ~ 1e-4."""
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


def chi2(counts, probs, n):
    keep = probs > 0
    assert counts[~keep].sum() == 0  # filtered tokens are never drawn
    e = probs[keep] * n
    return float(((counts[keep] - e) ** 2 / e).sum()), int(keep.sum()) - 1


@pytest.mark.parametrize("t,k,p", [(1.0, 0, 1.0), (0.5, 0, 1.0), (1.0, 5, 1.0), (1.5, 0, 0.7),
                                   (0.8, 6, 0.9)])
def test_sampled_frequencies_match_processed_distribution(t, k, p):
    n = 40000
    logits = torch.randn(10, generator=torch.Generator().manual_seed(1)) * 1.5
    u = torch.rand(n, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    tok, lp = sample(logits.expand(n, 10), t, k, p, u)
    probs = process_logits(logits, t, k, p).softmax(-1).double()
    counts = torch.bincount(tok, minlength=10).double()
    stat, df = chi2(counts, probs, n)
    assert stat < chi2_critical(df)
    # the unprocessed distribution: must be rejected when it differs
    wrong = logits.softmax(-1).double()
    if (t, k, p) != (1.0, 0, 1.0):
        assert float(((counts - wrong * n) ** 2 / (wrong * n)).sum()) > chi2_critical(9)
    # temperature alone
    assert torch.allclose(lp, (logits / (t or 1.0)).log_softmax(-1)[tok], atol=1e-5)


def test_generate_first_token_frequencies_match_model_distribution(tmp_path):
    """End to end: one prompt repeated n times (one prefill, n random streams) samples the model's
    processed next-token distribution."""
    hf = _hf_tiny(vocab=12, std=0.3, seed=3)
    hf.save_pretrained(tmp_path)
    m = load_model(tmp_path)[0]
    prompt, n, kw = [1, 2, 3], 6000, dict(temperature=1.5, top_k=8, top_p=0.95)
    gens = generate(m, [prompt] * n, 1, seed=0, **kw)
    with torch.no_grad():
        probs = process_logits(m(torch.tensor([prompt]))[0, -1], **kw).softmax(-1).double()
    # the filters bite and the distribution is not a point
    assert (probs == 0).sum() >= 5 and probs.max() < 0.5
    counts = torch.bincount(torch.tensor([g.tokens[0] for g in gens]), minlength=12).double()
    stat, df = chi2(counts, probs, n)
    assert stat < chi2_critical(df)


def test_greedy_takes_first_of_equal_maxima():
    tok, _ = sample(torch.tensor([[0.0, 2.0, 2.0, 1.0], [3.0, 3.0, 3.0, 3.0]]), 0.0, 0, 1.0, None)
    assert tok.tolist() == [1, 0]


# ------------------------------------------------------------------------------------------------
# edge cases


def test_max_new_tokens_zero_returns_empty_generations(model):
    assert generate(model, [[1], [2, 3]], 0) == [Generation(answer_start=0),
                                                 Generation(answer_start=0)]


@pytest.mark.parametrize("args,kw,msg", [
    ([], {}, "prompt list is empty"),
    ([[1], []], {}, "prompt 1 is empty"),
    ([[1] * 100], {}, "exceeds the model's context of 128"),
    ([[1, V]], {}, "outside the model's vocabulary"),
    ([[1]], dict(budget=-1, think_end="</think>", wait="Wait"), "budget must be >= 0"),
    ([[1]], dict(budget=1, wait="Wait"), "need think_end"),
    ([[1]], dict(budget=1, think_end="</think>"), "needs the tokenizer"),
    ([[1]], dict(budget=1, think_end=TableTokenizer(V).c(0), tokenizer=TableTokenizer(V)),
     "needs wait"),
    ([[1], [2]], dict(budget=[1], think_end="</think>", wait="Wait"), "2 prompts"),
    ([[1]], dict(think_end="", tokenizer=TableTokenizer(V)), "cannot write"),
    ([[1]], dict(think_end="x", wait="Wait", tokenizer=TableTokenizer(V, {3: "x", 4: "Wait"})),
     None),
    ([[1]], dict(think_end="ab", wait="b", tokenizer=TableTokenizer(V, {3: "a", 4: "b"}), budget=1),
     "could form"),
    ([[1]], dict(temperature=float("nan")), "temperature"),
    ([[1]], dict(top_p=0.0), "top_p"),
    ([[1]], dict(temperature=-1.0), "temperature"),
])
def test_bad_arguments_raise_clear_value_errors(model, args, kw, msg):
    if msg is None:  # the control case: a marker and "Wait" the tokenizer can write are accepted
        generate(model, args, 4, **kw)
        return
    with pytest.raises(ValueError, match=msg):
        generate(model, args, 40, **kw)


def test_runs_in_bfloat16(saved):
    m = load_model(saved[1], dtype=torch.bfloat16)[0]
    tok = TableTokenizer(V)
    gens = generate(m, PROMPTS[:2], 8, temperature=1.0, seed=0, tokenizer=tok, think_end=tok.c(0),
                    max_think_tokens=4)
    assert all(len(g.tokens) == 8 and all(math.isfinite(x) for x in g.logprobs) for g in gens)
