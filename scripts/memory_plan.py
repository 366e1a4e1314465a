"""Memory per rank of a sharded (--shard, FSDP2) training run, planned from the model's shapes
before any GPU is touched, and measured on CPU against the real sharded tensors.

    python scripts/memory_plan.py --config j1-7b --world 8 --gpu-gb 80 --tokens 8192 \\
        --rollout-tokens 65536
    python scripts/memory_plan.py --config path/to/config.json --world 16 --dtype float32
    torchrun --nproc_per_node=2 scripts/memory_plan.py --config tiny --measure
        # plan against the real thing

What is counted, per rank, with W ranks (every formula below is checked by --measure,
tests/test_shard.py):

* parameters, gradients, AdamW: FSDP2 cuts each tensor along its first dimension into W pieces of
  ceil(d0 / W) rows (the last rank's may be shorter), so rank 0 holds sum over tensors of ceil(d0 /
  W) * (other dims) elements: 4 bytes each for the float32 master weights, 4 for their gradients, 8
  for AdamW's two moments (plus one float32 `step` per tensor). J1-7B (7.6e9 parameters) on 8 ranks:
  15.2 GB of the 16 bytes per parameter.
* the reference model (train_grpo.py --beta > 0): float32, sharded the same way, 4 bytes per
  element.
* gathered for compute: one block's full weights at a time (two with FSDP2's prefetch of the next),
  in the compute dtype, and the root's (embeddings, final norm, lm_head), which stay gathered from
  the forward to the end of the backward.
* activations per token of a micro-batch, which autograd keeps for the backward (counted tensor by
  tensor from j1_min/model.py, checked against torch.autograd.graph.saved_tensors_hooks): per block,
  two RMSNorms (the float32 input copy, the rsqrt, the normalised and the scaled output),
  attention's q, k, v, output and log-sum-exp, the MLP's gate, up, silu(gate) and product; then the
  final norm, the token ids and RoPE's cos/sin. With --activation-checkpointing a block keeps only
  its input, and one block's activations are rebuilt at a time during the backward. Not counted: the
  lm_head chunk's logits (rows x 256 positions x vocab x 4 bytes x ~2,
  j1_min/logprobs.py:selected_logprobs), allocator slack and the CUDA context (~1-2 GB on a GPU).
* RL rollouts (train_grpo.py): the policy gathered into one full float32 copy per rank
  (shard.full_model, 4 bytes per parameter) and the KV cache, layers x 2 x kv-heads x head-dim x 4
  bytes per rollout token. They live during the rollout, when the gradients are freed and no
  activations are kept; the copy is freed before the update (rl.step never holds it,
  tests/test_memory.py).

The peak of each phase of a run, per rank: sums of the parts above. What makes each sum hold (what
is freed or sharded when) is tested in tests/test_memory.py; the sums were not measured on a GPU.

* load: each rank loads its float32 model on the CPU (host memory: 4 bytes per parameter, the
  checkpoint's tensors converted one at a time) and fully_shard moves one group at a time to the
  GPU (a block, then the root, unsharded in float32), keeping this rank's piece; the reference is
  loaded after the policy is sharded (shard.load_device, tests/test_memory.py).
* rollout: the sharded states (parameters, AdamW, reference), the gathered copy and the KV cache.
  No root stays gathered: a forward without backward is followed by shard.reshard.
* update: the states, the gradients, the gathered blocks and root, and the activations.
* save: the states (each rank writes its DCP shard) and one full float32 tensor at a time, gathered
  for the Hugging Face export; rank 0 holds the whole float32 model on its CPU, plus one
  safetensors file (at most 5 GB) being serialized.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from j1_min.checkpoint import SHARD_BYTES, config_from_hf  # noqa: E402
from j1_min.model import ModelConfig, Transformer  # noqa: E402

CONFIGS = {
    # train_sft.py --init tiny (vocabulary 512): the embedded judge's architecture, 4.6M parameters
    "tiny": dict(vocab_size=512, hidden_size=256, intermediate_size=768, num_hidden_layers=6,
                 num_attention_heads=8, num_key_value_heads=2, head_dim=32,
                 tie_word_embeddings=True, qkv_bias=True),
    # ~26M parameters, the same layout, wider and deeper
    "26m": dict(vocab_size=4096, hidden_size=512, intermediate_size=1536, num_hidden_layers=8,
                num_attention_heads=8, num_key_value_heads=2, head_dim=64, tie_word_embeddings=True,
                qkv_bias=True),
    # Qwen2.5-7B's config.json (J1-7B's base), 7,615,616,512 parameters
    "j1-7b": dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944,
                  num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4, head_dim=128,
                  tie_word_embeddings=False, qkv_bias=True, rope_theta=1e6,
                  max_position_embeddings=32768),
}
GB = 1e9


def model_config(name: str) -> ModelConfig:
    """A named config (CONFIGS) or a config.json file."""
    if name in CONFIGS:
        return ModelConfig(**CONFIGS[name])
    if not Path(name).is_file():
        raise ValueError(f"--config {name}: not one of {sorted(CONFIGS)} and not a config.json "
                         "file")
    return config_from_hf(json.loads(Path(name).read_text()), name)


def shapes(cfg: ModelConfig) -> dict[str, tuple]:
    """name -> shape of every parameter (tied ones once), from a model built on the meta device (no
    memory)."""
    with torch.device("meta"):
        model = Transformer(cfg)
    return {n: tuple(p.shape) for n, p in model.named_parameters()}


def shard_elements(shape: tuple, world: int) -> int:
    """Elements of rank 0's piece of a tensor sharded by FSDP2: ceil(d0 / world) rows of the other
    dims."""
    return math.ceil(shape[0] / world) * math.prod(shape[1:])


def block_bytes_per_token(cfg: ModelConfig, act_bytes: int) -> int:
    """Bytes one transformer block keeps per token for its backward, counted from j1_min/model.py's
    forward: two RMSNorms (a float32 copy of the input, which is the input itself under float32, the
    rsqrt, the normalised and the scaled output), attention's q, k, v and output and its float32
    log-sum-exp per head, and the MLP's gate, up, silu(gate) and product. act_bytes: 4 for float32
    compute, 2 for bf16."""
    h, i, a = cfg.hidden_size, cfg.intermediate_size, act_bytes
    q, kv = cfg.num_attention_heads * cfg.head_dim, cfg.num_key_value_heads * cfg.head_dim
    norm = 4 * h + 4 + 2 * a * h
    return 2 * norm + a * (2 * q + 2 * kv) + 4 * cfg.num_attention_heads + 4 * a * i


def activation_bytes_per_token(cfg: ModelConfig, act_bytes: int, checkpointing: bool,
                               rows: int = 1) -> float:
    """Bytes the forward keeps per token of a micro-batch of `rows` rows for the backward: every
    block's (block_bytes_per_token), or with activation checkpointing only each block's input (and
    the positions, once); then the final norm without its output (lm_head's chunks recompute
    theirs), the token ids (int64), and RoPE's cos and sin (one per position, shared by the rows).
    With checkpointing the backward rebuilds one block at a time: add block_bytes_per_token for the
    peak."""
    a, h = act_bytes, cfg.hidden_size
    tail = (4 * h + 4 + a * h) + 8 + 2 * a * cfg.head_dim / rows
    if checkpointing:
        return cfg.num_hidden_layers * a * h + 8 / rows + tail
    return cfg.num_hidden_layers * block_bytes_per_token(cfg, a) + tail


def plan(cfg: ModelConfig, world: int, dtype: str = "bfloat16", tokens: int = 0,
         rollout_tokens: int = 0, reference: bool = True) -> dict:
    """Bytes per rank (rank 0, the largest) of each part, and the peak of each phase of a run
    (load, rollout, update, save; see the module docstring)."""
    sh = shapes(cfg)
    n = sum(math.prod(s) for s in sh.values())
    local = sum(shard_elements(s, world) for s in sh.values())
    compute = 2 if dtype == "bfloat16" else 4
    blocks = {k: s for k, s in sh.items() if k.startswith("model.layers.0.")}
    root = {k: s for k, s in sh.items() if not k.startswith("model.layers.")}
    block_n, root_n = (sum(math.prod(s) for s in g.values()) for g in (blocks, root))
    p = {"parameters": 4 * local, "gradients": 4 * local, "adamw": 8 * local + 4 * len(sh),
         "reference": 4 * local if reference else 0,
         "gathered_blocks": 2 * compute * block_n, "gathered_root": compute * root_n,
         "activations_per_token": activation_bytes_per_token(cfg, compute, False),
         "activations_per_token_checkpointed": activation_bytes_per_token(cfg, compute, True)
         + block_bytes_per_token(cfg, compute),  # + the block rebuilt in the backward
         "rollout_copy": 4 * n, "kv_cache_per_token": cfg.num_hidden_layers * 2
         * cfg.num_key_value_heads
         * cfg.head_dim * 4, "params": n, "world": world,
         # fully_shard moves one group (a block, then the root) unsharded to the device at a time
         "load_group": 4 * max(block_n, root_n),
         # the export gathers one full float32 tensor at a time, offloaded to rank 0's CPU
         "save_tensor": 4 * max(math.prod(s) for s in sh.values())}
    states = p["parameters"] + p["adamw"] + p["reference"]
    # load: the policy's shards (and the reference's) plus the group being sharded; the host holds
    # the float32 model being loaded (checkpoint.build_model converts one tensor at a time)
    p["load_peak"] = p["parameters"] + p["reference"] + p["load_group"]
    p["load_host"] = 4 * n
    # rollout: no gradients (zero_grad(set_to_none)), no gathered root (shard.reshard), the full
    # float32 copy (shard.full_model) and the KV cache
    p["rollout_peak"] = states + p["rollout_copy"] + rollout_tokens * p["kv_cache_per_token"]
    # update: the rollout copy is freed (rl.step never holds it; tests/test_memory.py)
    p["train_peak"] = states + p["gradients"] + p["gathered_blocks"] + p["gathered_root"]
    p["train_peak_checkpointed"] = p["train_peak"] + tokens * p[
        "activations_per_token_checkpointed"]
    p["train_peak"] += tokens * p["activations_per_token"]
    # save: the DCP shards are written from the states; the export gathers tensor by tensor; rank 0
    # holds the whole float32 model on its CPU and serializes one safetensors file (<= 5 GB) at once
    p["save_peak"] = states + p["save_tensor"]
    p["save_host"] = 4 * n + min(4 * n, SHARD_BYTES)
    return p


def show(name: str, p: dict, tokens: int, rollout_tokens: int, gpu_gb: float) -> None:
    """Print the plan as a table, with the peak of each phase and whether it fits in gpu_gb."""
    print(f"{name}: {p['params'] / 1e9:.3f}B parameters, {p['world']} ranks; GB per rank")
    rows = [("parameters (float32 master, sharded)", p["parameters"]),
            ("gradients (float32, sharded)",
            p["gradients"]), ("AdamW moments (float32, sharded)", p["adamw"]),
            ("reference model, beta > 0 (float32, sharded)", p["reference"]),
            ("gathered: 2 blocks in the compute dtype", p["gathered_blocks"]),
            ("gathered: root (embeddings, lm_head)", p["gathered_root"]),
            ("activations per token (MB)", p["activations_per_token"] * 1e3),
            ("  with --activation-checkpointing (MB)", p["activations_per_token_checkpointed"]
             * 1e3),
            ("rollouts: full float32 policy copy", p["rollout_copy"]),
            ("rollouts: KV cache per token (MB)", p["kv_cache_per_token"] * 1e3)]
    for label, v in rows:
        print(f"  {label:46s} {v / GB:10.3f}")
    print("peak of each phase, GB per rank (GPU; host memory where it is large)")
    for label, key, host in (
            ("load: on the CPU, sharded onto the GPU", "load_peak", "load_host"),
            (f"rollout: copy + {rollout_tokens} tokens of KV cache", "rollout_peak", None),
            (f"update: {tokens} tokens per micro-batch", "train_peak", None),
            ("  with --activation-checkpointing", "train_peak_checkpointed", None),
            ("save: DCP shards + rank 0's HF export", "save_peak", "save_host")):
        fits = "fits" if p[key] / GB <= gpu_gb else "does NOT fit"
        extra = f"; host {p[host] / GB:.1f}" + (" on rank 0" if key == "save_peak" else "") \
            if host else ""
        print(f"  {label:46s} {p[key] / GB:10.3f}  {fits} in {gpu_gb:g} GB{extra}")


def measure(cfg: ModelConfig, dtype: str, rows: int = 2, length: int = 64) -> dict:
    """Under torchrun: shard a random model as train_*.py --shard does, take one AdamW step, and
    return this rank's actual bytes (params, grads, AdamW state, a sharded reference), each
    parameter's local element count, and the activation bytes per token that saved_tensors_hooks
    sees on an unsharded copy (float32). It joins torchrun's process group and leaves it joined
    (collective.teardown is the caller's)."""
    from j1_min import collective, shard
    from j1_min.logprobs import selected_logprobs
    collective.init(torch.device("cpu"))
    model = Transformer(cfg)
    model.init_weights(seed=0)
    plain = Transformer(cfg)
    plain.load_state_dict(model.state_dict())
    ref = Transformer(cfg)
    shard.wrap(model, dtype)
    shard.wrap(ref.requires_grad_(False), dtype)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randint(0, cfg.vocab_size, (rows, length), generator=torch.Generator().manual_seed(0))
    selected_logprobs(model, x, x).sum().backward()
    size = lambda t: shard.local(t).numel() * shard.local(t).element_size()
    out = {"parameters": sum(size(p) for p in model.parameters()),
           "gradients": sum(size(p.grad) for p in model.parameters()),
           "local_elements": {n: shard.local(p).numel() for n, p in model.named_parameters()},
           "reference": sum(size(p) for p in ref.parameters())}
    opt.step()
    out["adamw"] = sum(size(t) for s in opt.state.values() for t in s.values())
    for ac in (False, True):
        m = Transformer(cfg)
        m.load_state_dict(plain.state_dict())
        if ac:
            shard.checkpoint_blocks(m)
        weights = {p.untyped_storage().data_ptr() for p in m.parameters()}
        saved = {}

        def pack(t):
            if t.untyped_storage().data_ptr() not in weights:
                saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            m(x, return_hidden=True)
        out["activations_per_token"
            + ("_checkpointed" if ac else "")] = sum(saved.values()) / (rows * length)
    out["rank"] = collective.rank()
    return out  # the process group stays up: main prints the ranks' reports in turn


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="j1-7b", help=f"{', '.join(CONFIGS)}, or a config.json "
                                                      "file")
    ap.add_argument("--world", type=int, default=8, help="ranks (GPUs) the model is sharded over")
    ap.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"],
                    help="compute dtype (--dtype)")
    ap.add_argument("--tokens", type=int, default=8192, help="tokens per micro-batch (rows x "
                                                             "length)")
    ap.add_argument("--rollout-tokens", type=int, default=64 * 2048,
                    help="RL: rollout rows x (prompt + new tokens)")
    ap.add_argument("--gpu-gb", type=float, default=80.0, help="memory per GPU, GB")
    ap.add_argument("--no-reference", action="store_true", help="beta = 0: no reference model")
    ap.add_argument("--measure", action="store_true", help="under torchrun (CPU, gloo): print "
                                                           "planned and measured bytes of this "
                                                           "rank as JSON (float32, a 2 x 64 "
                                                           "micro-batch for the activations)")
    args = ap.parse_args(argv)
    cfg = model_config(args.config)
    if args.measure:
        if "RANK" not in os.environ:
            raise ValueError("--measure runs under torchrun (torchrun --nproc_per_node=2 "
                             "scripts/memory_plan.py ...)")
        got = measure(cfg, "float32")
        want = plan(cfg, int(os.environ["WORLD_SIZE"]), "float32")
        want["activations_per_token"] = activation_bytes_per_token(cfg, 4, False, rows=2)
        # kept
        want["activations_per_token_checkpointed"] = activation_bytes_per_token(
            cfg, 4, True, rows=2)
        from j1_min import collective
        # one rank at a time: a report is over 4 kB, more than a pipe writes at once, so two ranks
        # printing together could interleave their lines
        for r in range(int(os.environ["WORLD_SIZE"])):
            if collective.rank() == r:
                print(json.dumps({"planned": want, "measured": got}), flush=True)
            collective.barrier()
        collective.teardown()
        return
    show(args.config, plan(cfg, args.world, args.dtype, args.tokens, args.rollout_tokens,
                           not args.no_reference),
         args.tokens, args.rollout_tokens, args.gpu_gb)


if __name__ == "__main__":
    try:
        main()
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
