"""--shard: FSDP2 for the trainers. Wrapping a model, the full model gathered for generation,
gradient clipping over sharded gradients, and sharded run checkpoints (Distributed Checkpoint) with
a Hugging Face export at every save.

Sources: PyTorch's FSDP2 (`torch.distributed.fsdp.fully_shard`, its docs and tutorial) and
Distributed Checkpoint (`torch.distributed.checkpoint`: `dcp.save` / `dcp.load` with
`state_dict.get_state_dict` / `set_state_dict`), used the way torchtitan's `parallelize` and
`checkpoint` modules use them: each transformer block is sharded, then the root (embeddings, final
norm, lm_head); bf16 compute with float32 reduction under `MixedPrecisionPolicy`; activation
checkpointing applied to a block before it is sharded.

Every parameter is cut along its first dimension into `world` pieces (the last may be shorter, FSDP2
pads it), so a rank keeps ~1/world of the float32 weights, gradients and AdamW moments. A block's
full weights exist only while it computes (all-gathered before its forward and backward, freed
after); the root's stay gathered from the forward to the end of the backward (FSDP2 does not reshard
the root after its forward), and after a forward with no backward (the frozen reference, the
finiteness probe) until `reshard` frees them. A trainer loads on the CPU and shards from there
(`load_device`), so no rank holds the whole model on its GPU.

A sharded run's checkpoint is a folder, `--out` (a `.pt` path is refused under --shard):

    <out>/latest               the name of the current step folder: the commit point, replaced
                               atomically
    <out>/step-00000100/dcp/   Distributed Checkpoint of the model and the AdamW state, one file per
                               rank
    <out>/step-00000100/run.pt the run's config, step, data position and RNG state (plain values,
                               weights_only)
    <out>/step-00000100/model/ the weights as a Hugging Face folder (config.json, model.safetensors,
                               tokenizer.json)

A save writes a new step folder under a hidden temporary name (every rank its DCP file, rank 0 the
rest), renames it into place once all ranks are done, and only then points `latest` at it
(files.atomic_write), then removes the older step folders. A kill at any moment leaves `latest`
naming a complete folder (or no `latest`: no checkpoint yet). DCP itself promises no atomicity (its
`.metadata` is written last, by rank 0); the folder and the pointer do. DCP needs `--out` on a file
system every rank sees (one node, or a shared mount across nodes).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

from . import collective
from .checkpoint import LATEST, RUN_FORMAT, build_model, is_run, save_hf
from .files import atomic_write



# ------------------------------------------------------------------------------------------------
# wrapping

def is_sharded(model) -> bool:
    """Whether `model` has been through fully_shard (FSDP2 changes the module's class in place)."""
    from torch.distributed.fsdp import FSDPModule
    return isinstance(model, FSDPModule)


def checkpoint_blocks(model) -> None:
    """Activation checkpointing per transformer block (--activation-checkpointing): with gradients
    on, a block keeps only its input (B, T, hidden) and recomputes its inside during the backward
    (torch.utils.checkpoint, non-reentrant). Generation (no gradients, a KV cache) runs the block as
    before. Same math, bit for bit."""
    from torch.utils.checkpoint import checkpoint
    for block in model.model.layers:
        inner = block.forward

        def forward(*args, _inner=inner):
            if torch.is_grad_enabled():
                return checkpoint(_inner, *args, use_reentrant=False)
            return _inner(*args)
        block.forward = forward


def wrap(model, dtype: str = "float32", activation_checkpointing: bool = False, shard: bool = True):
    """Prepare a Transformer for training in place and return it: activation checkpointing per block
    if asked, then (shard=True) fully_shard on each block and on the root. Under --dtype bfloat16
    the gathered weights are bf16 for compute while the sharded master weights, their gradients'
    reduction and AdamW stay float32. Call it before the optimizer is made: FSDP2 replaces the
    parameters with sharded ones (DTensors)."""
    if activation_checkpointing:
        checkpoint_blocks(model)
    if not shard:
        return model
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
    mp = (MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
          if dtype == "bfloat16"
          else MixedPrecisionPolicy())
    for block in model.model.layers:
        fully_shard(block, mp_policy=mp)
    fully_shard(model, mp_policy=mp)
    return model


def load_device(device: torch.device, sharded: bool) -> torch.device:
    """Where a trainer loads its starting weights: the training device, or under --shard the CPU.
    fully_shard then moves one block at a time to the device and keeps this rank's piece, so a
    rank's GPU never holds more than the shards plus one unsharded group (the root: embeddings,
    final norm and lm_head, 4.4 GB float32 for J1-7B). Loaded on the device, every rank would
    first hold the whole float32 model there (30.5 GB for J1-7B, twice with a reference). The price
    is host memory: each rank holds its float32 copy on the CPU until it is sharded
    (scripts/memory_plan.py counts both)."""
    return torch.device("cpu") if sharded else torch.device(device)


def local(t: torch.Tensor) -> torch.Tensor:
    """This rank's piece of a sharded tensor (a DTensor), or the tensor itself."""
    return t.to_local() if hasattr(t, "to_local") else t


def reshard(model) -> None:
    """Free the gathered weights of a sharded model's root (embeddings, final norm, lm_head: 1.1B
    parameters for J1-7B) after a forward that has no backward: the frozen reference's,
    REINFORCE++'s old-policy log-probs, the finiteness probe. FSDP2 reshards a root only after its
    backward (torch.distributed.fsdp.FSDPModule.reshard); the blocks reshard after each forward
    anyway. A model that is not sharded is left alone."""
    if is_sharded(model):
        model.reshard()


def full_model(model):
    """The model to generate with: `model` itself when it is not sharded, else a plain copy with the
    full weights gathered on every rank (a collective: all ranks call it together). Generation then
    needs no collective per token, so ranks whose rollouts end after different numbers of tokens do
    not wait for each other. It costs one full copy of the weights per rank in the master dtype
    (float32: 4 bytes per parameter, 30.5 GB for J1-7B) for as long as the copy lives: the rollout
    or evaluation, not the update."""
    if not is_sharded(model):
        return model
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    # name -> full tensor
    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))
    device = next(iter(state.values())).device
    return build_model(model.config, dict(state), "the gathered model", None, device)


def clip_grad_norm(params, limit: float) -> torch.Tensor:
    """torch.nn.utils.clip_grad_norm_ that also takes sharded gradients: the total norm over every
    rank's pieces (a full tensor, the same on all ranks), and every gradient scaled by min(1, limit
    / norm). Returns the norm before clipping, shape (). For plain tensors it is clip_grad_norm_'s
    own arithmetic (the same two calls)."""
    params = [p for p in params if p.grad is not None]
    norm = torch.nn.utils.get_total_norm([p.grad for p in params])
    if hasattr(norm, "full_tensor"):
        norm = norm.full_tensor()
    torch.nn.utils.clip_grads_with_norm_(params, limit, norm)
    return norm


# ------------------------------------------------------------------------------------------------
# checks

def check_args(args, torchrun: bool) -> None:
    """What --shard needs, checked before any work: torchrun, a run folder as --out, and a sharded
    run to resume (a .pt from a DDP or one-process run cannot continue sharded, nor a sharded run
    without --shard)."""
    resume = getattr(args, "resume", None)
    if args.shard:
        if not torchrun:
            raise ValueError("--shard shards the model over torchrun's processes; run under "
                             "torchrun (torchrun --nproc_per_node=N ...)")
        if str(args.out).endswith(".pt"):
            raise ValueError(f"--out {args.out}: --shard writes a run folder, not a .pt file (name "
                             f"a folder, e.g. {str(args.out)[:-3]}_run)")
        if resume and not is_run(resume):
            raise ValueError(f"--resume {resume}: not a sharded run folder (a .pt from a DDP or "
                             "one-process run cannot continue under --shard; start a new --shard "
                             "run from it instead)")
    elif resume and is_run(resume):
        raise ValueError(f"--resume {resume}: a sharded run folder; continue it with --shard under "
                         "torchrun")


def check_out(path, force: bool, resume) -> Path:
    """--out under --shard: a folder that is new, or --resume's own folder, or replaced with
    --force. Its log `<out>.log.jsonl` sits next to it (runs.check_out checks that)."""
    path = Path(path)
    same = resume is not None and Path(resume).resolve() == path.resolve()
    if path.exists() and not path.is_dir():
        raise ValueError(f"--out {path} is a file; --shard writes a run folder")
    if path.is_dir() and any(path.iterdir()) and not (force or same):
        raise ValueError(f"--out {path} exists; pass --force to overwrite it, or --resume {path} "
                         "to continue it")
    if not path.parent.is_dir():
        raise ValueError(f"--out {path}: folder {path.parent} does not exist")
    return path


# ------------------------------------------------------------------------------------------------
# run folders

def save(out, model, optimizer, tokenizer, run_config: dict, train_state: dict, main: bool) -> None:
    """Write one checkpoint of a sharded run into the folder `out` (all ranks call it; see the
    module's docstring for the layout and why a kill never leaves a half-written checkpoint as the
    current one)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                         get_state_dict)

    out = Path(out)
    name = None
    if main:
        out.mkdir(exist_ok=True)
        n, name = 0, f"step-{train_state['step']:08d}"
        # the same step saved again (an interrupt right after a save)
        while (out / name).exists():
            n, name = n + 1, f"step-{train_state['step']:08d}.{n + 1}"
        shutil.rmtree(out / f".{name}.tmp", ignore_errors=True)
    name = collective.broadcast_object(name, local(next(model.parameters())).device)
    tmp = out / f".{name}.tmp"
    model_state, optim_state = get_state_dict(model, optimizer)  # name -> DTensor shard
    dcp.save({"model": model_state, "optim": optim_state}, checkpoint_id=str(tmp / "dcp"))
    # rank 0
    full = get_model_state_dict(model,
                                options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if main:
        plain = build_model(model.config, dict(full), "the gathered model", None, "cpu")
        save_hf(plain, tmp / "model", tokenizer,
                extra_config={"j1_min": {"template": run_config.get("template")}},
                chat_template=run_config.get("chat_template"))
        torch.save({"format": RUN_FORMAT, "run_config": run_config, "train_state": train_state},
                   tmp / "run.pt")
    # every rank's DCP file is written; the others wait here while rank 0 exports, which for 7B on
    # a slow disk can outlast NCCL's default 10-minute timeout (collective.TIMEOUT is longer)
    collective.barrier()
    if main:
        os.replace(tmp, out / name)
        atomic_write(out / LATEST, lambda p: Path(p).write_text(name + "\n"))  # the commit point
        for old in out.iterdir():
            if old.is_dir() and old.name != name and (old.name.startswith("step-")
                                                      or old.name.endswith(".tmp")):
                shutil.rmtree(old, ignore_errors=True)
    collective.barrier()


def load(dcp_dir, model, optimizer) -> None:
    """Restore the model's and the optimizer's shards from a Distributed Checkpoint (any world size:
    DCP reshards). The optimizer must be the run's (same parameter groups), made after wrap()."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
    model_state, optim_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optim": optim_state}
    dcp.load(state, checkpoint_id=str(dcp_dir))
    set_state_dict(model, optimizer, model_state_dict=state["model"],
                   optim_state_dict=state["optim"])
