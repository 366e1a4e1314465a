"""Shared test helpers: tiny random models built with transformers' own config classes (no
downloads)."""
from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

import pytest
import torch

from j1_min.judge_format import THINK_END
from j1_min.model import ModelConfig, Transformer
from j1_min.tokenizer import SPECIAL_TOKENS, train_bpe

torch.set_num_threads(2)


def randomize_(model: torch.nn.Module, std: float = 0.2, seed: int = 0) -> torch.nn.Module:
    """Give every parameter (norms and biases too) large random values, so a mismatch anywhere shows
    in the logits; transformers' default init (std 0.02, unit norms, zero biases) would hide bias or
    norm mistakes."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            base = 1.0 if name.endswith("norm.weight") else 0.0
            p.copy_(base + std * torch.randn(p.shape, generator=gen))
    return model


TINY = dict(vocab_size=320, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)


def hf_model(arch: str, **overrides):
    """A random tiny transformers model: 'qwen2', 'qwen2_tied', 'llama' or 'qwen3' (head_dim 24 !=
    64/4)."""
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
    """Factory: save a random tiny transformers model to a folder and return (transformers_model,
    folder)."""
    def make(arch: str = "qwen2", **overrides):
        m = hf_model(arch, **overrides)
        d = tmp_path / arch
        m.save_pretrained(d)
        return m, d
    return make


def judge_tokenizer(pairs: list[dict], vocab: int = 400):
    """A tiny BPE trained on the judge prompts of `pairs` plus the judge's markers ("Wait",
    `</think>`, both verdicts), so the planted judges below have single tokens to plant."""
    from j1_min.judge_format import build_prompt
    return train_bpe([build_prompt(r["question"], r["response_a"], r["response_b"])
                      + "Wait\n</think>\n[[A]] [[B]]"
                      for r in pairs] * 3, vocab)


def planted_judge(tok, verdicts: str = "AB", strength: float = 3.0):
    """A random tiny transformers Qwen2 in which, as a bigram, `\\n` (the prompt's last token) is
    followed by `</think>`, `[[` by one of `verdicts` (equally likely), that by `]]`, and `]]` by
    `<|im_end|>`. So the judge ends its thinking at once (budget forcing turns that into "Wait"),
    and after the forced end of thinking and answer prefix `\\n[[` it gives a well-formed verdict: a
    coin flip with "AB", a pure position bias with "A". `strength` is each planted logit (against
    about 0 for every other token): 3 leaves the other tokens most of the probability, 8 very
    little."""
    import transformers
    cfg = transformers.Qwen2Config(vocab_size=tok.vocab_size, hidden_size=64, intermediate_size=128,
                                   num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=2, max_position_embeddings=1024,
                                   tie_word_embeddings=False)
    torch.manual_seed(0)
    model = transformers.Qwen2ForCausalLM(cfg).eval()
    bra, ket, nl = (tok.encode(s)[0] for s in ("[[", "]]", "\n"))
    picks = [tok.encode(v)[0] for v in verdicts]
    plants = [(bra, picks), (ket, [tok.eos_id]),
              (nl, [tok.token_id("</think>")])] + [(p, [ket]) for p in picks]
    with torch.no_grad():
        # blocks add nothing: the next token depends on the current one only
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        # these dimensions belong to the planted tokens
        model.model.embed_tokens.weight[:, :len(plants)] = 0.0
        for dim, (src, dsts) in enumerate(plants):
            model.model.embed_tokens.weight[src] = 0.0
            model.model.embed_tokens.weight[src, dim] = 1.0
            model.lm_head.weight[:, dim] = 0.0
            model.lm_head.weight[dsts, dim] = strength
    return model


def tiny_teacher(folder: Path, tok, strength: float = 3.0, verdicts: str = "AB") -> None:
    """planted_judge saved as a Hugging Face folder with its tokenizer.json."""
    planted_judge(tok, verdicts, strength).save_pretrained(folder)
    (folder / "tokenizer.json").write_text(tok.to_json())


class TableTokenizer:
    """A stand-in tokenizer for models with a made-up vocabulary: id i is the text names[i] (by
    default a distinct CJK character, and id 9 a line break). encode takes the longest matching name
    first. It has what the sampler's budget forcing uses: decode, encode and token_texts."""

    def __init__(self, vocab: int, names: dict[int, str] | None = None):
        self.names = [chr(0x3400 + i) for i in range(vocab)]
        self.names[9] = "\n"
        for i, s in (names or {}).items():
            self.names[i] = s
        self.eos_id = None

    def decode(self, ids) -> str:
        return "".join(self.names[i] for i in ids)

    def encode(self, text: str, allow_special: bool = False) -> list[int]:
        ids, at = [], 0
        while at < len(text):
            i = max((i for i, s in enumerate(self.names) if s and text.startswith(s, at)),
                    key=lambda i: len(self.names[i]))
            ids.append(i)
            at += len(self.names[i])
        return ids

    def token_texts(self) -> list[str]:
        return self.names

    def c(self, *ids) -> str:
        """The text of these ids (a marker or a forced text given as ids)."""
        return self.decode(ids)


# ------------------------------------------------------------------------------------------------
# overfit judges

TRACES = [("Q: 12+30?\n<think>\n", "A 42: yes.\nB 52: no.\nSo A is "
                                   "right.</think>\n[[A]]<|im_end|>"),
          ("Q: 7*6?\n<think>\n", "A 41: no.\nWait, check B\nB 42: "
                                 "yes.\n</think>\n\n[[B]]<|im_end|>"),
          # ends its turn without closing its thinking
          ("Q: 9-4?\n<think>\n", "A 5: yes.<|im_end|>"),
          ("Q: 3+3?\n<think>\n", "A 6: yes.\nWait, check A\n6-3=3 yes.\nSo A is "
                                 "right.\n</think>[[A]]<|im_end|>")]


def overfit_judge(style: str):
    """(model, tokenizer): a 2-layer model overfit to TRACES. style "qwen2.5": byte-level BPE with
    Qwen2's split and no `</think>` token (J1-7B's tokenizer family); "qwen3": `</think>` is an
    added token."""
    specials = SPECIAL_TOKENS if style == "qwen3" else [t for t in SPECIAL_TOKENS
                                                        if "think" not in t]
    tok = train_bpe([p + c for p, c in TRACES] * 20, 320, special_tokens=tuple(specials))
    model = Transformer(ModelConfig(vocab_size=tok.vocab_size, hidden_size=64,
                                    intermediate_size=128, num_hidden_layers=2,
                                    num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                                    max_position_embeddings=256, model_type="qwen2", qkv_bias=True))
    model.init_weights(seed=0)
    seqs = [tok.encode(p + c, allow_special=True) for p, c in TRACES]
    x = torch.zeros(len(seqs), max(map(len, seqs)), dtype=torch.long)
    mask = torch.zeros(x.shape)
    for i, s in enumerate(seqs):
        x[i, :len(s)], mask[i, :len(s)] = torch.tensor(s), 1.0
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    torch.manual_seed(0)
    for _ in range(250):
        nll = torch.nn.functional.cross_entropy(model(x[:, :-1]).transpose(1, 2), x[:, 1:],
                                                reduction="none")
        loss = (nll * mask[:, 1:]).sum() / mask[:, 1:].sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval(), tok


@pytest.fixture(scope="session", params=["qwen2.5", "qwen3"])
def judge(request):
    """An overfit judge of each tokenizer family, trained once per test session."""
    model, tok = overfit_judge(request.param)
    assert (tok.token_id(THINK_END) is None) == (request.param == "qwen2.5")
    return model, tok


@contextlib.contextmanager
def process_group(backend: str):
    """A one-process torch.distributed group on a file store ("gloo", or "cuda:gloo" for NCCL's
    device map: a backend for CUDA tensors only), for code that runs under torchrun."""
    import torch.distributed as dist
    with tempfile.TemporaryDirectory() as d:
        dist.init_process_group(backend, store=dist.FileStore(f"{d}/store", 1), rank=0,
                                world_size=1)
        try:
            yield
        finally:
            dist.destroy_process_group()
