"""Shared test helpers: tiny random models built with transformers' own config classes (no downloads)."""
from __future__ import annotations

import pytest
import torch

torch.set_num_threads(2)


def randomize_(model: torch.nn.Module, std: float = 0.2, seed: int = 0) -> torch.nn.Module:
    """Give every parameter (norms and biases too) large random values, so a mismatch anywhere shows in the
    logits; transformers' default init (std 0.02, unit norms, zero biases) would hide bias or norm mistakes."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            base = 1.0 if name.endswith("norm.weight") else 0.0
            p.copy_(base + std * torch.randn(p.shape, generator=gen))
    return model


TINY = dict(vocab_size=320, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)


def hf_model(arch: str, **overrides):
    """A random tiny transformers model: 'qwen2', 'qwen2_tied', 'llama' or 'qwen3' (head_dim 24 != 64/4)."""
    import transformers as T
    kw = {**TINY, **overrides}
    if arch == "qwen2":
        cfg = T.Qwen2Config(**kw, tie_word_embeddings=False)
    elif arch == "qwen2_tied":
        cfg = T.Qwen2Config(**kw, tie_word_embeddings=True)
    elif arch == "llama":
        cfg = T.LlamaConfig(**kw, rope_theta=5000.0)
    elif arch == "qwen3":
        cfg = T.Qwen3Config(**{**kw, "head_dim": 24})
    else:
        raise ValueError(arch)
    torch.manual_seed(0)
    model = T.AutoModelForCausalLM.from_config(cfg, attn_implementation="eager").eval()
    return randomize_(model)


@pytest.fixture
def saved_hf(tmp_path):
    """Factory: save a random tiny transformers model to a folder and return (transformers_model, folder)."""
    def make(arch: str = "qwen2", **overrides):
        m = hf_model(arch, **overrides)
        d = tmp_path / arch
        m.save_pretrained(d)
        return m, d
    return make
