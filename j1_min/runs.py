"""The plumbing that train_sft.py and train_grpo.py share: the learning-rate schedule, torchrun/DDP setup, rank-0
JSON-lines logs, run checkpoints with their full training state (atomic, resumable), and user-error handling.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from .checkpoint import read_pt, save_pt


def lr_at(step: int, max_lr: float, warmup: int, total: int, min_ratio: float = 0.1) -> float:
    """Learning rate for optimizer step `step` (0-based): linear warm-up over `warmup` steps, then cosine decay to
    min_ratio * max_lr at `total` (Loshchilov & Hutter 2017, SGDR; the nanoGPT schedule)."""
    if step < warmup:
        return max_lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return max_lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


# ------------------------------------------------------------------------------------------------ processes

@dataclass
class Dist:
    """This process's place: rank, number of processes, device."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        """Rank 0 writes checkpoints and logs."""
        return self.rank == 0


def setup_dist(device: str) -> Dist:
    """One process, or one of torchrun's (RANK / WORLD_SIZE / LOCAL_RANK set): gloo on CPU, NCCL on GPU."""
    if "RANK" not in os.environ:
        return Dist(device=torch.device(device))
    rank, world, local = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"])
    dev = torch.device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Dist(rank, world, dev)


def all_sum(x: torch.Tensor, d: Dist) -> torch.Tensor:
    """Sum of x over all processes (x itself with one process)."""
    if d.world > 1:
        x = x.clone()
        dist.all_reduce(x)
    return x


def teardown(d: Dist) -> None:
    """Leave the process group, if there is one. The barrier first: a rank that tears down while rank 0 is still
    writing the checkpoint can take gloo's threads down mid-flight (seen as `terminate called without an active
    exception`, exit -6, about one run in a few under load)."""
    if d.world > 1:
        dist.barrier()
        dist.destroy_process_group()


# ------------------------------------------------------------------------------------------------ files

def check_out(path, force: bool, resume) -> Path:
    """The output path, refused when its folder is missing, or when it exists and neither --force nor --resume."""
    path = Path(path)
    if not path.parent.is_dir():
        raise ValueError(f"--out {path}: folder {path.parent} does not exist")
    if path.exists() and not force and not resume:
        raise ValueError(f"--out {path} exists; pass --force to overwrite it or --resume {path} to continue it")
    return path


class Log:
    """Metrics appended as JSON lines to `<out>.log.jsonl` (rank 0 only), each flushed at once."""

    def __init__(self, out: Path, enabled: bool, fresh: bool):
        self.path = out.with_suffix(".log.jsonl")
        self.enabled = enabled
        if enabled and fresh:
            self.path.write_text("")

    def write(self, record: dict) -> None:
        """Append one record, time-stamped."""
        if self.enabled:
            with open(self.path, "a") as f:
                f.write(json.dumps({"time": round(time.time(), 3), **record}) + "\n")


def rng_state() -> dict:
    """Every RNG the loops draw from, as plain tensors (loadable with weights_only=True)."""
    s = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        s["cuda"] = torch.cuda.get_rng_state_all()
    return s


def set_rng_state(s: dict) -> None:
    """Restore what rng_state saved."""
    torch.set_rng_state(s["torch"])
    if "cuda" in s and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


def save_run(path, model, tokenizer, run_config: dict, optimizer, step: int, data_pos: dict, **extra) -> None:
    """Atomically write a resumable `.pt`: weights, tokenizer, config, optimizer, step, data position, RNG states."""
    save_pt(path, model, tokenizer, run_config=run_config, train_state={
        "optimizer": optimizer.state_dict(), "step": step, "data_pos": data_pos, "rng": rng_state(), **extra})


def start(out: Path, d: Dist, model, opt, state: dict | None, config: dict):
    """Begin or resume a run: restore the optimizer and RNG state from `state` (None for a fresh run), wrap the
    model in DDP when there are several processes, and open the log with the resolved configuration.
    Returns (step to continue from, the model to call for training, the log)."""
    step = 0
    if state:
        opt.load_state_dict(state["optimizer"])
        step = state["step"]
        set_rng_state(state["rng"])
    wrapped = DDP(model) if d.world > 1 else model
    log = Log(out, d.main, fresh=not state)
    log.write({"config": config, "resumed_at": step} if state else {"config": config})
    return step, wrapped, log


def load_train_state(path) -> dict:
    """The training state of a run checkpoint (refused if it has none)."""
    ck = read_pt(path)
    if "train_state" not in ck:
        raise ValueError(f"--resume {path}: this checkpoint holds no training state (it is a model, not a run)")
    return {"run_config": ck.get("run_config", {}), **ck["train_state"]}


@contextlib.contextmanager
def ctrl_c():
    """Within the block, Ctrl-C (SIGINT) sets flag[0] instead of raising, so a loop can finish its step, save and
    exit cleanly; the previous handler comes back afterwards."""
    flag = [False]
    previous = signal.signal(signal.SIGINT, lambda *_: flag.__setitem__(0, True))
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


def cli(main) -> None:
    """Run main(); a user mistake (ValueError) prints `error: ...` and exits with status 2, never a traceback."""
    try:
        main()
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
