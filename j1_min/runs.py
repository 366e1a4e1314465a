"""The plumbing that train_sft.py and train_grpo.py share: the learning-rate schedule, torchrun/DDP
setup, rank-0 JSON-lines logs, run checkpoints with their full training state (atomic, resumable),
and user-error handling. Under --shard (FSDP2, j1_min/shard.py) the same functions take the sharded
model: no DDP wrapper, and a run checkpoint is a folder written by every rank.
"""
from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import json
import math
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel as DDP

from . import collective, shard
from .checkpoint import is_run, read_pt, read_run, save_pt
from .checks import check_output


def lr_at(step: int, max_lr: float, warmup: int, total: int, min_ratio: float = 0.1) -> float:
    """Learning rate for optimizer step `step` (0-based): linear warm-up over `warmup` steps, then
    cosine decay to min_ratio * max_lr at `total` (Loshchilov & Hutter 2017, SGDR; the nanoGPT
    schedule)."""
    if step < warmup:
        return max_lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return max_lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


# ------------------------------------------------------------------------------------------------
# processes

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


@functools.cache
def _malloc_trim():
    """glibc's malloc_trim, or None (not Linux, or a C library without it, such as musl)."""
    if sys.platform != "linux":
        return None
    import ctypes
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def release_memory() -> bool:
    """Give the C allocator's free memory back to the system: glibc's malloc_trim(0), once per
    training step; True when it was called (Linux with glibc), False elsewhere (a no-op).

    glibc keeps freed blocks in its heap, and after a large tensor is freed it raises its mmap
    threshold so that later large tensors come from the heap too; tensors whose sizes change every
    step (SFT micro-batches cut to their longest row, RL rollouts of every length) then leave the
    heap growing. Seed 0's J1-SFT of the second experiment (1,000 steps, bf16 autocast, 4.6M
    parameters) ended at 21.6 GB of resident memory on a 24 GB machine (its /proc VmRSS). The cost
    is the pages faulted in again. `python bench/heap.py --steps 40 --threads 1` (the tiny model, 40
    bf16 steps at random lengths 100-900, each side in its own process, 2 rounds, beside a 2-thread
    training run): 2,540 MB resident without, 1,053 MB with a trim after each step (2.41x), at 1.21x
    the time."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


def setup_dist(device: str) -> Dist:
    """One process, or one of torchrun's (RANK / WORLD_SIZE / LOCAL_RANK set): gloo on CPU, NCCL on
    GPU."""
    if "RANK" not in os.environ:
        return Dist(device=torch.device(device))
    rank, world, local = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(
        os.environ["LOCAL_RANK"])
    dev = torch.device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    collective.init(dev)  # its timeout outlasts rank 0's export at a sharded save
    return Dist(rank, world, dev)


def all_sum(x: torch.Tensor, d: Dist) -> torch.Tensor:
    """Sum of x over all processes, on d.device (collective.all_sum: a CPU tensor is moved to the
    process's device, as NCCL needs)."""
    return collective.all_sum(x, d.device)


def no_sync(model, last: bool):
    """DDP's no_sync() for every micro-batch but the step's last, so gradients are all-reduced once
    per step; a nullcontext for one process and for a sharded model (FSDP2 reduce-scatters each
    micro-batch's gradients and accumulates the shards, which costs no full-size gradient)."""
    return model.no_sync() if isinstance(model, DDP) and not last else contextlib.nullcontext()


def teardown(d: Dist) -> None:
    """Leave the process group, if there is one, after a barrier (collective.teardown)."""
    collective.teardown()


def begin(args, flag: str, rows: int) -> tuple[Dist, Path]:
    """The start of a training run, both trainers: --shard checked against torchrun, the process
    group (or one process), --out checked before any work, and the global batch (`flag`, `rows`)
    divisible by the number of processes. Returns (the Dist, --out's path)."""
    shard.check_args(args, "RANK" in os.environ)
    d = setup_dist(args.device)
    out = check_out(args.out, args.force, args.resume, folder=args.shard)
    if rows % d.world:
        raise ValueError(f"{flag} {rows} must be divisible by the number of processes ({d.world})")
    return d, out


def finish(d: Dist, out, step: int, interrupted: bool, save, final_evaluation) -> None:
    """The end of a training run, both trainers: after Ctrl-C, save(step), say how to resume, and
    exit with status 130 (128 + SIGINT, as judge.py does), so that a script running the trainer
    (scripts/stages.sh) stops there instead of taking the saved step for a finished run; after the
    last step, final_evaluation() (None: there is none) and its metrics printed; then teardown."""
    if interrupted:
        save(step)
        if d.main:
            print(f"interrupted: saved step {step} to {out}; continue with --resume {out}")
    elif final_evaluation is not None:
        metrics = final_evaluation()
        if d.main:
            print(json.dumps(metrics))
    teardown(d)
    if interrupted:
        sys.exit(130)


# ------------------------------------------------------------------------------------------------
# files

def check_out(path, force: bool, resume, folder: bool = False) -> Path:
    """The output path and its log `<out>.log.jsonl`, checked before any work (checks.check_output).
    An existing one is overwritten only with --force, or continued when --out is the --resume file
    itself (its log is then appended to, after a `resumed_at` line); --resume with another --out
    never replaces a file by itself. folder: --out is a sharded run's folder (shard.check_out)."""
    path = Path(path)
    same = resume is not None and Path(resume).resolve() == path.resolve()
    if folder:
        shard.check_out(path, force, resume)
    else:
        if path.exists() and not path.is_dir() and not (force or same):
            raise ValueError(f"--out {path} exists; pass --force to overwrite it, or --resume "
                             f"{path} to continue it")
        check_output(path, force or same)
    check_output(log_path(path), force or same, "--out's log")
    return path


def log_path(out) -> Path:
    """A run's log, next to its --out: `runs/j1_sft.pt` logs to `runs/j1_sft.log.jsonl`."""
    return Path(out).with_suffix(".log.jsonl")


def logged(out) -> Path | None:
    """--out's log: `<name>.log.jsonl`, else its gzipped copy `<name>.log.jsonl.gz` (the form
    docs/logs commits), else None."""
    path = log_path(out)
    gz = path.with_name(path.name + ".gz")
    return path if path.exists() else gz if gz.exists() else None


def read_log(out) -> list[dict]:
    """The lines of --out's log (or of its gzipped copy, `logged`) that stand: a resumed run goes
    back to its checkpoint's step, so the lines a killed run wrote after that step (before the
    `resumed_at` line) are dropped."""
    path = logged(out) or log_path(out)
    try:
        raw = path.read_bytes()
        text = (gzip.decompress(raw) if path.suffix == ".gz" else raw).decode()
        lines = [json.loads(ln) for ln in text.splitlines() if ln.strip()]
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: {e}") from None
    kept = []
    for r in lines:
        if "resumed_at" in r:
            kept = [k for k in kept if k.get("step", -1) <= r["resumed_at"]]
        kept.append(r)
    return kept


def sha256(path) -> str:
    """The SHA-256 of a file's bytes, in hex: what a resumed run compares to know its data is the
    same (None for standard input, '-', which cannot be read again)."""
    if str(path) == "-":
        return None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class Log:
    """Metrics appended as JSON lines to `<out>.log.jsonl` (rank 0 only), each flushed at once."""

    def __init__(self, out: Path, enabled: bool, fresh: bool):
        self.path = log_path(out)
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


def save_run(path, model, tokenizer, run_config: dict, optimizer, step: int, data_pos: dict,
             **extra) -> None:
    """Atomically write a resumable `.pt`: weights, tokenizer, config, optimizer, step, data
    position, RNG states."""
    save_pt(path, model, tokenizer, run_config=run_config, train_state={
        "optimizer": optimizer.state_dict(), "step": step, "data_pos": data_pos, "rng": rng_state(),
        **extra})


class Saver:
    """Writes a run's checkpoints, never one whose model is not finite, and remembers the last one
    written, so that a stop names a file that exists and holds a finite model, or says that there is
    none.

    Finite means: every weight is finite and the model maps `probe` (a few token ids of the training
    data) to finite logits. The second half matters: a huge learning rate leaves weights near 1e30,
    finite, whose next forward overflows. Every process checks (DDP keeps their weights equal), so
    all stop together; rank 0 writes. A sharded model: each rank checks its pieces, the verdict is
    summed over ranks, and every rank writes its own."""

    def __init__(self, out: Path, main: bool, probe: list[int], state: dict | None = None):
        self.out, self.main = out, main
        self.probe = torch.tensor([probe[:32]])  # (1, T)
        # (file, step) of a finite model
        self.last = (state["path"], state["step"]) if state else None

    def finite(self, model) -> bool:
        """Whether the model's weights and its logits on the probe are all finite."""
        with torch.no_grad():
            if not shard.is_sharded(model):
                if not all(torch.isfinite(p).all() for p in model.parameters()):
                    return False
                return bool(torch.isfinite(model(self.probe.to(model.lm_head.weight.device))).all())
            # sharded: every rank runs the forward (a collective), whatever its own pieces hold
            bad = sum(int(not torch.isfinite(shard.local(p)).all()) for p in model.parameters())
            device = shard.local(model.lm_head.weight).device
            bad += int(not torch.isfinite(model(self.probe.to(device))).all())
            shard.reshard(model)  # a forward without backward leaves the root gathered
            return collective.all_sum(torch.tensor(float(bad)), device).item() == 0

    def stop(self, what: str) -> ValueError:
        """The error to raise when training goes non-finite: `what`, and the last finite checkpoint
        (or none)."""
        last = (f"the last checkpoint with finite weights is {self.last[0]} (step {self.last[1]})"
                if self.last
                else "no checkpoint with finite weights was written by this run")
        return ValueError(f"{what}: stopping without saving; {last} (lower --lr or check the data)")

    def check(self, model, step: int) -> None:
        """Raise stop(...) when the model after `step` is not finite."""
        if not self.finite(model):
            raise self.stop(f"the model after step {step} is not finite (weights or logits)")

    def save(self, model, tokenizer, run_config: dict, optimizer, step: int, data_pos: dict,
             **extra) -> None:
        """save_run to `out` on rank 0, after check(): a non-finite model is never written. A
        sharded model: every rank writes its shard into the run folder `out` (shard.save)."""
        self.check(model, step)
        if shard.is_sharded(model):
            shard.save(self.out, model, optimizer, tokenizer, run_config,
                       {"step": step, "data_pos": data_pos, "rng": rng_state(), **extra}, self.main)
        elif self.main:
            save_run(self.out, model, tokenizer, run_config, optimizer, step, data_pos, **extra)
        self.last = (self.out, step)


def start(out: Path, d: Dist, model, opt, state: dict | None, config: dict, may_change=()):
    """Begin or resume a run: restore the optimizer and RNG state from `state` (None for a fresh
    run), wrap the model in DDP when there are several processes and it is not sharded (a sharded
    run's model and optimizer shards come back from its Distributed Checkpoint), and open the log
    with the resolved configuration.
    On resume, `config` is compared with the saved one first (resume_changes; `may_change` names the
    settings that may differ). The log is appended to when --out is the resumed file, else written
    afresh. Returns (step to continue from, the model to call for training, the log)."""
    step, notes = 0, []
    if state:
        notes = resume_changes(state, config, may_change)
        if "dcp" in state:
            shard.load(state["dcp"], model, opt)
        else:
            opt.load_state_dict(state["optimizer"])
        step = state["step"]
        set_rng_state(state["rng"])
        if d.main:
            for n in notes:
                print(f"warning: resuming with a changed setting: {n}")
    wrapped = DDP(model) if d.world > 1 and not shard.is_sharded(model) else model
    append = bool(state) and Path(state["path"]).resolve() == out.resolve()
    log = Log(out, d.main, fresh=not append)
    log.write({"config": config, "resumed_at": step, "resumed_from": str(state["path"]),
               "changed": notes}
              if state else {"config": config})
    return step, wrapped, log


ALWAYS_MAY_CHANGE = {"out", "resume", "force", "run"}


def resume_changes(state: dict, config: dict, may_change) -> list[str]:
    """Compare a resumed run's saved configuration with today's. A difference in a setting outside
    `may_change` (the learning rate, the batch, the data, the seed, ...) would make the continued
    run another run: it is refused, naming every such setting. The others (more --steps, evaluation
    and saving intervals, ...) come back as notes "--steps 100 -> 200", for a warning and the log. A
    setting the saved run did not record is a note."""
    saved, notes, refused = state["run_config"], [], []
    if config.get("steps") is not None and config["steps"] < state["step"]:
        raise ValueError(f"--resume {state['path']}: the run is at step {state['step']} already; "
                         f"--steps {config['steps']} must be at least that")
    for k in sorted(set(saved) | set(config)):
        if k in ALWAYS_MAY_CHANGE or saved.get(k) == config.get(k):
            continue
        change = (f"--{k.replace('_', '-')} {saved.get(k, '(not recorded)')} -> "
                  f"{config.get(k, '(none)')}")
        (notes if k in may_change or k not in saved else refused).append(change)
    if refused:
        raise ValueError(f"--resume {state['path']}: settings differ from the saved run's and "
                         f"would change what it computes: {'; '.join(refused)}. Resume with the "
                         "saved settings, or start a new run")
    return notes


def load_train_state(path, run: str | None = None) -> dict:
    """The training state of a run checkpoint, written by the script named `run` ("train_sft",
    "train_grpo") if given: run_config, step, optimizer, RNG states, and `path`. A model without
    training state, or another script's run, is refused with what the file is. A sharded run folder
    gives its latest step's, with `dcp`, the folder of its Distributed Checkpoint, in place of
    `optimizer`."""
    ck = read_run(path) if is_run(path) else read_pt(path)
    if "train_state" not in ck:
        raise ValueError(f"--resume {path}: this checkpoint holds no training state (it is a "
                         "model, not a run)")
    rc = ck.get("run_config", {})
    kind = rc.get("run") or ("train_grpo" if "group" in rc else "train_sft" if "micro" in rc
                             else None)
    if run and kind and kind != run:
        raise ValueError(f"--resume {path}: this is a {kind}.py run (step "
                         f"{ck['train_state']['step']}); {run}.py resumes only its own runs (pass "
                         "it as the starting model of a new run instead)")
    return {"run_config": rc, **ck["train_state"], "path": str(path),
            **({"dcp": ck["dcp"]} if "dcp" in ck else {})}


@contextlib.contextmanager
def ctrl_c():
    """Within the block, Ctrl-C (SIGINT) sets flag[0] instead of raising, so a loop can finish its
    step, save and exit cleanly; the previous handler comes back afterwards."""
    flag = [False]
    previous = signal.signal(signal.SIGINT, lambda *_: flag.__setitem__(0, True))
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


def cli(main) -> None:
    """Run main(); a user mistake (ValueError) prints `error: ...` and exits with status 2, never a
    traceback."""
    try:
        main()
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
