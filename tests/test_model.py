"""The model equals transformers on the same weights, and its KV cache equals a full forward
pass."""
from __future__ import annotations

import json

import pytest
import torch

from j1_min.checkpoint import CheckpointError, config_from_hf, load_model, save_hf
from j1_min.model import Transformer

ARCHS = ["qwen2", "qwen2_tied", "llama", "qwen3"]


# The cached paths below against a fresh full forward: the same float32 math summed in another order
# (one-query attention, chunked prefill), so logits of magnitude up to ~7 differ by rounding, 1e-5
# to 2e-5 depending on the CPU's kernels (1.1e-5 on an Intel Xeon where 1e-5 had passed on an AMD
# EPYC). A wrong mask, position or cache row moves them by 0.1 or more.
TOL = 5e-5


def batch(vocab=320, B=2, T=37, seed=1):
    return torch.randint(0, vocab, (B, T), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("arch", ARCHS)
def test_logits_match_transformers_loading_its_checkpoint(arch, saved_hf):
    hf, d = saved_hf(arch)
    ours = load_model(d)[0]
    x = batch()
    with torch.no_grad():
        ref, got = hf(x).logits, ours(x)
    assert got.shape == (2, 37, 320)
    # the random weights give logits far from zero, so the check has teeth
    assert ref.abs().max() > 1.0
    assert (ref - got).abs().max() < 1e-4


@pytest.mark.parametrize("arch", ARCHS)
def test_transformers_loads_our_save_pretrained_with_same_logits(arch, saved_hf, tmp_path):
    import transformers
    _, d = saved_hf(arch)
    ours = load_model(d)[0]
    save_hf(ours, tmp_path / "ours")
    back = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "ours").eval()
    x = batch(seed=2)
    with torch.no_grad():
        assert (back(x).logits - ours(x)).abs().max() < 1e-4
    assert back.config.tie_word_embeddings == ours.config.tie_word_embeddings


def test_bias_and_qk_norm_follow_the_architecture(saved_hf):
    names = {a: set(load_model(saved_hf(a)[1])[0].state_dict())
             for a in ("qwen2", "llama", "qwen3")}
    assert "model.layers.0.self_attn.q_proj.bias" in names["qwen2"]
    assert "model.layers.0.self_attn.o_proj.bias" not in names["qwen2"]
    assert "model.layers.0.self_attn.q_proj.bias" not in names["llama"]
    assert "model.layers.0.self_attn.q_norm.weight" in names["qwen3"]


@pytest.fixture(scope="module")
def model():
    from conftest import hf_model
    import tempfile
    d = tempfile.mkdtemp()
    # the hardest case: q/k norm and head_dim != hidden / heads
    hf_model("qwen3").save_pretrained(d)
    return load_model(d)[0]


@torch.no_grad()
def test_prefill_then_one_token_decode_equals_full_forward(model):
    x = batch(T=34)
    full = model(x)
    cache = model.new_cache(2, 64)
    parts = [model(x[:, :9], cache)] + [model(x[:, t:t + 1], cache) for t in range(9, 34)]
    assert (torch.cat(parts, 1) - full).abs().max() < TOL
    assert cache.lengths.tolist() == [34, 34]


@torch.no_grad()
def test_appending_chunks_of_2_to_5_tokens_at_any_offset_equals_full_forward(model):
    x = batch(T=40)
    full = model(x)
    cache = model.new_cache(2, 48)
    sizes = [3, 2, 5, 4, 2, 5, 3, 4, 2, 5, 5]  # 40 tokens, chunk boundaries at irregular offsets
    parts, t = [], 0
    for s in sizes:
        parts.append(model(x[:, t:t + s], cache))
        t += s
    assert t == 40
    assert (torch.cat(parts, 1) - full).abs().max() < TOL


@torch.no_grad()
def test_rows_of_different_lengths_decode_like_separate_sequences(model):
    a, b = batch(B=1, T=20, seed=3)[0], batch(B=1, T=11, seed=4)[0]
    cache = model.new_cache(2, 40)
    padded = torch.stack([a, torch.cat([b, torch.zeros(9, dtype=torch.long)])])  # right padding
    model(padded, cache)
    # the padding slots are dropped: they are overwritten next
    cache.lengths = torch.tensor([20, 11])
    nxt = torch.tensor([[5, 6, 7], [8, 9, 10]])
    got = model(nxt, cache)  # (2, 3, V)
    ref_a = model(torch.cat([a, nxt[0]])[None])[0, -3:]
    ref_b = model(torch.cat([b, nxt[1]])[None])[0, -3:]
    assert (got[0] - ref_a).abs().max() < TOL
    assert (got[1] - ref_b).abs().max() < TOL


@torch.no_grad()
def test_one_token_decode_of_rows_at_different_positions_equals_separate_sequences(model):
    """The one-query path (model.decode_attention, not SDPA) with a mask that differs per row and
    GQA."""
    seqs = [batch(B=1, T=n, seed=n)[0] for n in (23, 7, 15)]
    cache = model.new_cache(3, 40)
    model(torch.stack([torch.cat([s, torch.zeros(23 - len(s), dtype=torch.long)]) for s in seqs]),
          cache)
    cache.lengths = torch.tensor([23, 7, 15])
    for step in range(6):
        nxt = torch.tensor([[3 + step], [40 + step], [90 + step]])
        got = model(nxt, cache)[:, 0]  # (3, V)
        seqs = [torch.cat([s, n]) for s, n in zip(seqs, nxt)]
        for i, s in enumerate(seqs):
            assert (got[i] - model(s[None])[0, -1]).abs().max() < TOL


@torch.no_grad()
def test_rollback_then_new_tokens_equals_fresh_forward(model):
    x = batch(T=30)
    cache = model.new_cache(2, 40)
    model(x, cache)
    cache.lengths = cache.lengths - torch.tensor([4, 1])  # roll row 0 back by 4, row 1 by 1
    new = torch.tensor([[11, 12], [13, 14]])
    got = model(new, cache)
    ref0 = model(torch.cat([x[0, :26], new[0]])[None])[0, -2:]
    ref1 = model(torch.cat([x[1, :29], new[1]])[None])[0, -2:]
    assert (got[0] - ref0).abs().max() < TOL and (got[1] - ref1).abs().max() < TOL


@torch.no_grad()
def test_cache_select_repeats_a_prefilled_row(model):
    x = batch(B=1, T=12)
    cache = model.new_cache(1, 20)
    model(x, cache)
    cache.select(torch.tensor([0, 0, 0]))
    nxt = torch.tensor([[1], [2], [3]])
    got = model(nxt, cache)[:, 0]
    for i in range(3):
        ref = model(torch.cat([x[0], nxt[i]])[None])[0, -1]
        assert (got[i] - ref).abs().max() < TOL



@pytest.mark.parametrize("capacity", [3, 8])
def test_cache_reorder_moves_rows_in_place_and_grows_when_they_outnumber_its_room(model, capacity):
    """reorder([2, 0, 0, 1, 2]) on rows of lengths 5, 9, 12: a finished row's slot refilled, a row
    copied twice, more rows than the room of 3 (the cache grows), and each row then decodes like its
    own full sequence."""
    x = batch(B=3, T=12)
    lens = [5, 9, 12]
    cache = model.new_cache(3, 20, capacity)
    model(x, cache)
    cache.lengths = torch.tensor(lens)
    src = [2, 0, 0, 1, 2]
    cache.reorder(src)
    assert cache.k.shape[1] >= len(src) and cache.lengths.tolist() == [lens[i] for i in src]
    nxt = torch.tensor([[1], [2], [3], [4], [5]])
    got = model(nxt, cache)[:, 0]
    for j, i in enumerate(src):
        ref = model(torch.cat([x[i, :lens[i]], nxt[j]])[None])[0, -1]
        assert (got[j] - ref).abs().max() < TOL


def test_cache_overflow_is_a_clear_error(model):
    cache = model.new_cache(1, 8)
    with pytest.raises(ValueError, match="KV cache overflow"):
        model(batch(B=1, T=9), cache)


def test_qwen25_7b_config_builds_on_meta_with_exact_parameter_count():
    from pathlib import Path
    # Qwen2.5-7B's published config
    path = Path(__file__).resolve().parent / "fixtures" / "qwen2.5-7b-config.json"
    cfg = config_from_hf(json.loads(path.read_text()))
    with torch.device("meta"):
        m = Transformer(cfg)
    assert m.num_params() == 7_615_616_512
    assert cfg.rope_theta == 1e6 and cfg.qkv_bias and not cfg.tie_word_embeddings


def test_transformers5_config_spelling_reads_the_same_as_transformers4():
    v4 = dict(model_type="qwen2", vocab_size=10, hidden_size=8, intermediate_size=16,
              num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1, rope_theta=1e6,
              torch_dtype="bfloat16")
    v5 = {k: v for k, v in v4.items() if k not in ("rope_theta", "torch_dtype")}
    v5.update(rope_parameters={"rope_type": "default", "rope_theta": 1e6}, dtype="bfloat16")
    assert config_from_hf(v4) == config_from_hf(v5)


@pytest.mark.parametrize("change,message", [
    ({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "rope scaling"),
    ({"rope_parameters": {"rope_type": "linear", "rope_theta": 1e4, "factor": 2.0}},
     "rope scaling"),
    ({"use_sliding_window": True}, "sliding-window"),
    ({"model_type": "mistral"}, "not supported"),
    ({"hidden_act": "gelu"}, "hidden_act"),
])
def test_settings_that_change_the_math_are_refused(change, message):
    base = dict(model_type="qwen2", vocab_size=10, hidden_size=8, intermediate_size=16,
                num_hidden_layers=1, num_attention_heads=2)
    with pytest.raises(CheckpointError, match=message):
        config_from_hf({**base, **change})
