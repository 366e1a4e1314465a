"""What the four scripts check before any work starts: flag values, output paths, the device.

One pattern for every check. A flag's value is checked by its argparse `type=` function, so a bad
value costs one line, `error: argument --batch: must be >= 1, got 0`, and exit status 2 (argparse's
own). An output, a path or a combination of flags is checked by a function that raises ValueError
naming the flag or the file, which `runs.cli` prints as `error: ...` with exit status 2. Both happen
before a model is loaded or a step is run.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch


def _number(kind, s: str):
    try:
        return kind(s)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                         f"got {s!r}") \
            from None


def positive_int(s: str) -> int:
    """An integer >= 1 (a count of steps, items, rows, tokens)."""
    v = _number(int, s)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def nonneg_int(s: str) -> int:
    """An integer >= 0 (a budget, an interval where 0 means 'off')."""
    v = _number(int, s)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {v}")
    return v


def seed_int(s: str) -> int:
    """A seed: an integer in [0, 2**32)."""
    v = _number(int, s)
    if not 0 <= v < 2**32:
        raise argparse.ArgumentTypeError(f"must be in [0, 2**32), got {v}")
    return v


def _finite(s: str) -> float:
    v = _number(float, s)
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {s!r}")
    return v


def nonneg_float(s: str) -> float:
    """A finite number >= 0 (a temperature, a coefficient, a norm where 0 means 'off')."""
    v = _finite(s)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {v}")
    return v


def positive_float(s: str) -> float:
    """A finite number > 0 (a learning rate, a clip range)."""
    v = _finite(s)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {v}")
    return v


def probability(s: str) -> float:
    """A finite number in (0, 1] (top-p)."""
    v = _finite(s)
    if not 0 < v <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {v}")
    return v


def unit_interval(s: str) -> float:
    """A finite number in [0, 1] (a rate)."""
    v = _finite(s)
    if not 0 <= v <= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {v}")
    return v


def weights(s: str) -> tuple[float, ...]:
    """Comma-separated weights, each finite and >= 0, not all 0 (e.g. 0.45,0.2,0.1)."""
    try:
        w = tuple(_finite(x) for x in s.split(","))
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected weights like 0.3,0.5,0.2, got {s!r}") from None
    if min(w) < 0 or sum(w) <= 0:
        raise argparse.ArgumentTypeError(f"weights must be >= 0 and not all 0, got {s!r}")
    return w


def device(s: str) -> str:
    """A device this torch can use: 'cpu', 'cuda', 'cuda:1', 'mps', ... (a CPU-only torch refuses
    cuda here, not with an AssertionError at the first tensor)."""
    try:
        d = torch.device(s)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"{s!r} is not a device (cpu, cuda, cuda:1, mps, "
                                         "...)") from None
    if d.type == "cuda":
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"{s}: CUDA is not available (this torch is a "
                                             f"CPU-only build, or no GPU is visible)")
        if d.index is not None and d.index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(f"{s}: there are {torch.cuda.device_count()} CUDA "
                                             "devices")
    elif d.type == "mps" and not torch.backends.mps.is_available():
        raise argparse.ArgumentTypeError(f"{s}: MPS is not available on this machine")
    return s


def check_flags(ap: argparse.ArgumentParser, args: argparse.Namespace, rules: dict) -> None:
    """Apply the type functions above after parsing: rules maps a dest ('ppo_epochs') to one of
    them. For a script whose add_argument lines keep `type=int`; the message and exit status are
    argparse's, as with type=."""
    for dest, rule in rules.items():
        value = getattr(args, dest)
        if value is None:
            continue
        try:
            rule(str(value))
        except argparse.ArgumentTypeError as e:
            ap.error(f"argument --{dest.replace('_', '-')}: {e}")


def check_output(path, force: bool, flag: str = "--out", make_folder: bool = False) -> Path:
    """An output file, checked before the work that fills it: refused when it is a folder, when its
    folder is missing (created instead with make_folder) or sits under a regular file, or when it
    exists and not force."""
    path = Path(path)
    name = f"{flag} {path}" if flag else str(path)
    if path.is_dir():
        raise ValueError(f"{name} is a folder; give a file name")
    above = path.parent
    while not above.exists() and above != above.parent:
        above = above.parent
    if not above.is_dir():
        raise ValueError(f"{name}: {above} is a file, not a folder")
    if above != path.parent and not make_folder:
        raise ValueError(f"{name}: folder {path.parent} does not exist")
    if path.exists() and not force:
        raise ValueError(f"{name} exists; pass --force to overwrite it")
    return path
