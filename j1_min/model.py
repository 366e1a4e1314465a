"""The Qwen2-family decoder (Qwen2 / Qwen2.5, Llama, Qwen3) and its KV cache, in plain PyTorch.

Module and parameter names are exactly Hugging Face's (`model.layers.0.self_attn.q_proj.weight`,
...), so a checkpoint's state dict loads with no renaming. Loading and saving live in checkpoint.py.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

# train_sft.py --init tiny: ~4.6M parameters with a 512-token vocabulary, the embedded judge's
# architecture (Qwen2 layout, tied embeddings); ModelConfig(vocab_size=..., **TINY)
TINY = dict(hidden_size=256, intermediate_size=768, num_hidden_layers=6, num_attention_heads=8,
            num_key_value_heads=2, head_dim=32, max_position_embeddings=1024, rope_theta=10000.0,
            tie_word_embeddings=True, qkv_bias=True, model_type="qwen2")
# train_sft.py --init tiny4x: TINY four times larger (~18.4M with a 512-token vocabulary): hidden
# 512, MLP 1,536, heads of 64; the same depth, heads, context and layout
TINY_4X = {**TINY, "hidden_size": 512, "intermediate_size": 1536, "head_dim": 64}


@dataclass
class ModelConfig:
    """The architecture, in Hugging Face's config.json terms (checkpoint.config_from_hf reads
    one)."""
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    max_position_embeddings: int = 4096
    tie_word_embeddings: bool = False
    qkv_bias: bool = False  # Qwen2: bias on q, k, v (not o)
    o_bias: bool = False  # Llama / Qwen3 with attention_bias=True: bias on q, k, v and o
    qk_norm: bool = False  # Qwen3: RMSNorm over head_dim on each query and key head
    model_type: str = "qwen2"  # "qwen2" | "llama" | "qwen3": what checkpoint.save_hf writes


class RMSNorm(nn.Module):
    """y = w * x / sqrt(mean(x^2) + eps), computed in float32 (Zhang & Sennrich 2019; as
    transformers' Qwen2RMSNorm)."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalize over the last dimension."""
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.to(x.dtype)


def rope_cos_sin(positions: torch.Tensor, head_dim: int, theta: float, dtype: torch.dtype):
    """RoPE tables for absolute positions (Su et al. 2021), in the "rotate half" layout of
    transformers.

    inv_freq_i = theta^(-2i/d); angle = pos * inv_freq; cos/sin = cos/sin(cat(angle, angle)).
    positions: (B, T), or (1, T) when every row has the same positions.
    """
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=positions.device,
                                             dtype=torch.float) / head_dim))
    angles = positions[..., None].float() * inv_freq  # (B, T, D/2)
    emb = torch.cat((angles, angles), dim=-1)  # (B, T, D)
    return emb.cos().to(dtype)[:, None], emb.sin().to(dtype)[:, None]  # (B, 1, T, D) each


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x * cos + rotate_half(x) * sin, rotate_half([x1, x2]) = [-x2, x1]. x: (B, H, T, D)."""
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


class KVCache:
    """Preallocated keys and values, written at absolute positions, one length per row (gpt-fast's
    layout).

    Row b holds its own tokens in slots 0 .. lengths[b]-1, with no padding inside, so slot index ==
    position. An append writes slots lengths[b] .. lengths[b]+T-1 and a query at position p sees
    slots <= p: the mask is built from positions, never `is_causal` (SDPA aligns that top-left when
    queries are fewer than keys). Rolling a row back by k is `lengths[b] -= k`: the stale slots are
    overwritten before anything can see them.
    """

    def __init__(self, cfg: ModelConfig, batch_size: int, max_len: int, device, dtype,
                 capacity: int = 0):
        rows = max(batch_size, capacity)
        shape = (cfg.num_hidden_layers, rows, cfg.num_key_value_heads, max_len, cfg.head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)  # (L, B, Hkv, S, D)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.lengths = torch.zeros(batch_size, dtype=torch.long, device=device)  # (B,)
        self.max_len = max_len
        self.kv_len = 0

    def select(self, rows: torch.Tensor, capacity: int = 0) -> None:
        """Keep only `rows` (in that order, repeats allowed), in a new cache with room for
        `capacity` rows (at least len(rows)): copies a prompt to its G rows. Only the slots in use
        are copied; the rest are zeros, as at the start (a masked slot must still hold a finite
        number: -inf + NaN is NaN)."""
        used = int(self.lengths[rows].max())
        shape = list(self.k.shape)
        shape[1] = max(capacity, len(rows))
        k, v = self.k.new_zeros(shape), self.v.new_zeros(shape)  # (L, capacity, Hkv, S, D)
        k[:, :len(rows), :, :used], v[:, :len(rows), :,
                                      :used] = self.k[:, rows, :, :used], self.v[:, rows, :, :used]
        self.k, self.v, self.lengths = k, v, self.lengths[rows]

    def reorder(self, src: list[int]) -> None:
        """In place: row j takes what row src[j] holds, for j < len(src), and the batch becomes
        those rows (the rest of the capacity is kept for later). Only rows that move are copied, so
        dropping a finished row (the last row fills its slot) or forking one (a copy into a free
        slot) costs one row, not the whole cache; the cache grows (a whole copy) only when the rows
        outnumber its capacity."""
        if src == list(range(len(self.lengths))):  # the usual step: every row goes on where it is
            return
        # more rows than room: a new cache, a quarter larger than needed
        if len(src) > self.k.shape[1]:
            n = len(self.lengths)
            self.select(torch.arange(n, device=self.k.device), capacity=len(src) + len(src) // 4)
        moved = [j for j, i in enumerate(src) if i != j]
        if moved:
            to = torch.tensor(moved, device=self.k.device)
            frm = torch.tensor([src[j] for j in moved], device=self.k.device)
            used = int(self.lengths[frm].max())
            # the right side is gathered first: overlaps are safe
            self.k[:, to, :, :used] = self.k[:, frm, :, :used]
            self.v[:, to, :, :used] = self.v[:, frm, :, :used]
        self.lengths = self.lengths[torch.tensor(src, device=self.k.device)]

    def reserve(self, T: int):
        """Claim the next T positions of every row: returns their positions (B, T) and the attention
        mask.

        The mask is additive, in the cache's dtype, built once for all layers: mask[b, 0, t, j] = 0
        where key slot j <= positions[b, t] and -inf elsewhere; keys stop at the longest row (S
        slots).
        """
        positions = self.lengths[:, None] + torch.arange(T, device=self.lengths.device)  # (B, T)
        self.kv_len = int(positions.max()) + 1  # S
        if self.kv_len > self.max_len:
            raise ValueError(f"KV cache overflow: position {self.kv_len - 1} >= cache size "
                             f"{self.max_len}")
        self.lengths = self.lengths + T
        slots = torch.arange(self.kv_len, device=positions.device)
        visible = (slots <= positions[:, :, None])[:, None]  # (B, 1, T, S)
        mask = torch.zeros(visible.shape, dtype=self.k.dtype, device=positions.device)
        return positions, mask.masked_fill_(~visible, float("-inf"))  # (B, T), (B, 1, T, S)

    def write(self, layer: int, positions: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
        """Store k, v (B, Hkv, T, D) at positions (B, T); return the layer's keys and values (B,
        Hkv, S, D)."""
        idx = positions[:, None, :, None].expand_as(k)  # (B, Hkv, T, D)
        self.k[layer].scatter_(2, idx, k.to(self.k.dtype))  # (autocast may hand us another dtype)
        self.v[layer].scatter_(2, idx, v.to(self.v.dtype))
        B = len(self.lengths)  # the batch: the first B rows of the capacity
        return self.k[layer, :B, :, :self.kv_len], self.v[layer, :B, :, :self.kv_len]


def decode_attention(q, k, v, mask):
    """softmax(q k^T / sqrt(D) + mask) v for one query per row, as two batched matmuls per key/value
    head.

    The G = H / Hkv query heads of a group are stacked as G rows of one matmul against their shared
    keys (GQA), so keys and values are read once per group and never copied: k and v are slices of
    the cache. On a 2-core CPU SDPA's kernel took 1.2-1.4x as long for a single query
    (bench/decode_attention.py). The result equals SDPA's to float rounding. q (B, H, 1, D); k, v
    (B, Hkv, S, D); mask (B, 1, 1, S) additive -> (B, H, 1, D).
    """
    B, H, _, D = q.shape
    qg = q.reshape(B, k.shape[1], H // k.shape[1], D)  # (B, Hkv, G, D)
    scores = torch.matmul(qg * D ** -0.5, k.transpose(-1, -2)) + mask  # (B, Hkv, G, S)
    # float32 softmax, as transformers' eager path
    probs = scores.softmax(-1, dtype=torch.float32).to(v.dtype)
    return torch.matmul(probs, v).reshape(B, H, 1, D)


class Attention(nn.Module):
    """Grouped-query attention (Ainslie et al. 2023) with RoPE, the Qwen2 / Llama / Qwen3
    variants."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d, h, hkv = cfg.head_dim, cfg.num_attention_heads, cfg.num_key_value_heads
        self.cfg = cfg
        self.q_proj = nn.Linear(cfg.hidden_size, h * d, bias=cfg.qkv_bias or cfg.o_bias)
        self.k_proj = nn.Linear(cfg.hidden_size, hkv * d, bias=cfg.qkv_bias or cfg.o_bias)
        self.v_proj = nn.Linear(cfg.hidden_size, hkv * d, bias=cfg.qkv_bias or cfg.o_bias)
        self.o_proj = nn.Linear(h * d, cfg.hidden_size, bias=cfg.o_bias)
        if cfg.qk_norm:
            self.q_norm = RMSNorm(d, cfg.rms_norm_eps)
            self.k_norm = RMSNorm(d, cfg.rms_norm_eps)

    def forward(self, x, cos, sin, mask, cache: KVCache | None, layer: int, positions):
        """o_proj(softmax(q k^T / sqrt(D) + mask) v) for x (B, T, hidden); keys/values go through
        the cache."""
        B, T, _ = x.shape
        cfg = self.cfg
        q = self.q_proj(x).view(B, T, -1, cfg.head_dim)  # (B, T, H, D)
        k = self.k_proj(x).view(B, T, -1, cfg.head_dim)  # (B, T, Hkv, D)
        v = self.v_proj(x).view(B, T, -1, cfg.head_dim).transpose(1, 2)  # (B, Hkv, T, D)
        if cfg.qk_norm:  # Qwen3: per-head RMSNorm before RoPE
            q, k = self.q_norm(q), self.k_norm(k)
        q = apply_rope(q.transpose(1, 2), cos, sin)  # (B, H, T, D)
        k = apply_rope(k.transpose(1, 2), cos, sin)  # (B, Hkv, T, D)
        if cache is not None:
            k, v = cache.write(layer, positions, k, v)  # (B, Hkv, S, D)
        if T == 1 and cache is not None:
            y = decode_attention(q, k, v, mask)  # (B, H, 1, D)
        # softmax(q k^T / sqrt(D) + mask) v, each query head sharing its group's key/value head
        # (GQA)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None,
                                               enable_gqa=k.shape[1] != q.shape[1])
        return self.o_proj(y.transpose(1, 2).reshape(B, T, -1))


class MLP(nn.Module):
    """SwiGLU feed-forward: down(silu(gate(x)) * up(x)) (Shazeer 2020)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x):
        """(B, T, hidden) -> (B, T, hidden)."""
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))  # SwiGLU (Shazeer 2020)


class Block(nn.Module):
    """Pre-norm decoder layer: x + attn(norm(x)), then + mlp(norm(x))."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin, mask, cache, layer, positions):
        """(B, T, hidden) -> (B, T, hidden)."""
        # pre-norm residual
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, cache, layer, positions)
        return x + self.mlp(self.post_attention_layernorm(x))


class Transformer(nn.Module):
    """Decoder-only transformer: embed -> N x (attention, SwiGLU MLP) -> RMSNorm -> lm_head."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.model = nn.ModuleDict(dict(
            embed_tokens=nn.Embedding(cfg.vocab_size, cfg.hidden_size),
            layers=nn.ModuleList(Block(cfg) for _ in range(cfg.num_hidden_layers)),
            norm=RMSNorm(cfg.hidden_size, cfg.rms_norm_eps),
        ))
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        if cfg.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def init_weights(self, std: float = 0.02, seed: int | None = None) -> None:
        """Normal(0, std) linear and embedding weights, zero biases, unit norms (as transformers'
        _init_weights)."""
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        for name, p in self.named_parameters():
            with torch.no_grad():
                if name.endswith("norm.weight"):
                    p.fill_(1.0)
                elif name.endswith("bias"):
                    p.zero_()
                else:
                    p.copy_(torch.randn(p.shape, generator=gen) * std)

    def new_cache(self, batch_size: int, max_len: int, capacity: int = 0) -> KVCache:
        """An empty KV cache for `batch_size` rows of up to `max_len` positions, with room for
        `capacity` rows (at least batch_size; KVCache.reorder), on this model's device and dtype."""
        w = self.lm_head.weight
        return KVCache(self.config, batch_size, max_len, w.device, w.dtype, capacity)

    def hidden_states(self, input_ids: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Final-norm hidden states (B, T, hidden) for input_ids (B, T).

        Without a cache the T tokens are positions 0..T-1 (causal; right padding is harmless). With
        a cache, row b's tokens are appended at positions cache.lengths[b] .. +T-1 and the lengths
        advance by T.
        """
        B, T = input_ids.shape
        cfg = self.config
        if cache is None:
            # (1, T): one RoPE table for every row
            positions = torch.arange(T, device=input_ids.device)[None]
            mask = None  # plain causal attention over the T tokens themselves
        else:
            positions, mask = cache.reserve(T)  # (B, T), (B, 1, T, S)
        x = self.model.embed_tokens(input_ids)  # (B, T, hidden)
        cos, sin = rope_cos_sin(positions, cfg.head_dim, cfg.rope_theta, x.dtype)
        for i, block in enumerate(self.model.layers):
            x = block(x, cos, sin, mask, cache, i, positions)
        return self.model.norm(x)

    def forward(self, input_ids: torch.Tensor, cache: KVCache | None = None,
                return_hidden: bool = False):
        """Logits (B, T, vocab) for input_ids (B, T); with return_hidden, the final hidden states
        (B, T, hidden) instead, so a caller can apply lm_head a chunk at a time (a DDP wrapper still
        sees this forward)."""
        h = self.hidden_states(input_ids, cache)
        return h if return_hidden else self.lm_head(h)

    def num_params(self) -> int:
        """Parameter count, shared (tied) tensors counted once."""
        return sum(p.numel() for p in self.parameters())
