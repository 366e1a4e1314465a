"""Every torch.distributed call of j1_min and its scripts, in one place (tests/test_collectives.py
reads the code and fails on a collective anywhere else).

Why one place: NCCL takes CUDA tensors only (`dist.Backend.backend_capability["nccl"]` is
["cuda"]). A scalar made with `torch.tensor(x)` for a log line or a finiteness vote lives on the
CPU, and `dist.all_reduce` on it raises `No backend type associated with device type cpu` under
NCCL, while gloo, which the CPU tests run, accepts it. So every tensor a collective sees is moved
here to the process's device first, whatever device its caller made it on.

The process group's timeout is TIMEOUT, not NCCL's default 10 minutes: a sharded save has rank 0
write the Hugging Face export (30 GB of float32 for J1-7B) while the other ranks wait in a barrier,
and on a slow disk that takes more than 10 minutes (shard.save).
"""
from __future__ import annotations

from datetime import timedelta

import torch
import torch.distributed as dist

# how long a collective (a barrier during rank 0's export, above all) may wait before the process
# group gives up
TIMEOUT = timedelta(minutes=60)


def init(device: torch.device, timeout: timedelta = TIMEOUT) -> None:
    """Join torchrun's process group (RANK, WORLD_SIZE, MASTER_ADDR/PORT from the environment):
    NCCL for a CUDA device, gloo for the CPU, with `timeout` for every collective."""
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timeout)


def active() -> bool:
    """Whether this process is in a process group (torchrun), so that collectives run."""
    return dist.is_available() and dist.is_initialized()


def all_sum(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Sum of x over all processes, on `device` (the process's): x moved there first, so a CPU
    scalar is fine under NCCL. Without a process group, x on `device`. Never changes x."""
    x = x.to(device)
    if active():
        x = x.clone()
        dist.all_reduce(x)
    return x


def broadcast_object(obj, device: torch.device, src: int = 0):
    """Rank `src`'s `obj` (picklable) on every rank; NCCL carries it as a tensor on `device`."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src, device=device)
    return box[0]


def barrier() -> None:
    """Wait until every process gets here (nothing without a process group)."""
    if active():
        dist.barrier()


def teardown() -> None:
    """Leave the process group, if any, after a barrier: a rank that tears down while rank 0 is
    still writing the checkpoint can take gloo's threads down mid-flight (seen as `terminate called
    without an active exception`, exit -6, about one run in a few under load)."""
    if active():
        dist.barrier()
        dist.destroy_process_group()


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if active() else 0
