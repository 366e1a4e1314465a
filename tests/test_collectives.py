"""Collectives (j1_min/collective.py): every torch.distributed call goes through the one helper,
which hands each collective a tensor on the process's device, as NCCL needs; and the process group's
timeout outlasts rank 0's export at a sharded save.

The CPU tests run gloo, which takes CPU tensors, so a CPU run cannot tell a right tensor from a
wrong one. These tests check the rule instead: the code reads (AST) so that no collective is called
outside the helper, and the helper, under NCCL's device map (`init_process_group("cuda:gloo")`: a
CPU tensor raises there as under NCCL), moves what it is given to the process's device."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from conftest import process_group
from j1_min import collective, runs

ROOT = Path(__file__).resolve().parents[1]
HELPER = ROOT / "j1_min" / "collective.py"
# torch.distributed's collectives and process-group calls
COLLECTIVES = {
    "all_reduce", "all_reduce_coalesced", "all_gather", "all_gather_into_tensor",
    "all_gather_object", "all_to_all", "all_to_all_single", "barrier", "monitored_barrier",
    "batch_isend_irecv", "broadcast", "broadcast_object_list", "gather", "gather_object", "irecv",
    "isend", "recv", "reduce", "reduce_scatter", "reduce_scatter_tensor", "scatter",
    "scatter_object_list", "send", "init_process_group", "destroy_process_group"}


def code_files(root: Path = ROOT) -> list[Path]:
    """The project's code: the library, the top-level scripts, scripts/ and bench/."""
    files = [*root.glob("j1_min/**/*.py"), *root.glob("*.py"), *root.glob("scripts/*.py"),
             *root.glob("bench/*.py")]
    return sorted(f for f in files if f.name != "conftest.py")


def collective_calls(source: str) -> list[tuple[int, str]]:
    """(line, name) of every call of a torch.distributed collective in `source`: through the module
    under any alias (`import torch.distributed as dist`, `from torch import distributed`),
    spelled out (`torch.distributed.all_reduce`), or imported by name (`from torch.distributed
    import all_reduce as ar`)."""
    tree = ast.parse(source)
    modules, names = {"torch.distributed"}, {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name == "torch.distributed" and a.asname:
                    modules.add(a.asname)
        elif isinstance(node, ast.ImportFrom):
            for a in node.names:
                if node.module == "torch" and a.name == "distributed":
                    modules.add(a.asname or a.name)
                elif node.module == "torch.distributed" and a.name in COLLECTIVES:
                    names[a.asname or a.name] = a.name

    def dotted(e) -> str | None:
        if isinstance(e, ast.Name):
            return e.id
        if isinstance(e, ast.Attribute):
            head = dotted(e.value)
            return None if head is None else f"{head}.{e.attr}"
        return None

    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Attribute) and f.attr in COLLECTIVES and dotted(f.value) in modules:
            found.append((node.lineno, f.attr))
        elif isinstance(f, ast.Name) and f.id in names:
            found.append((node.lineno, names[f.id]))
    return found


def test_the_scanner_finds_collectives_under_every_spelling():
    src = ("import torch\nimport torch.distributed as dist\nfrom torch import distributed as td\n"
           "from torch.distributed import all_reduce as ar, barrier\n"
           "dist.all_reduce(x)\ntorch.distributed.broadcast_object_list(y)\ntd.barrier()\n"
           "ar(x)\nbarrier()\nx.gather(1, i)\ndist.get_rank()\n")
    assert collective_calls(src) == [(5, "all_reduce"), (6, "broadcast_object_list"),
                                     (7, "barrier"), (8, "all_reduce"), (9, "barrier")]


def test_no_collective_is_called_outside_the_helper():
    files = code_files()
    assert {HELPER, ROOT / "j1_min" / "runs.py", ROOT / "train_grpo.py"} <= set(files)
    outside = [f"{f.relative_to(ROOT)}:{line}: {name}" for f in files if f != HELPER
               for line, name in collective_calls(f.read_text())]
    assert not outside, ("call these through j1_min/collective.py, which moves the tensor to the "
                         f"process's device (NCCL takes CUDA tensors only): {outside}")


@pytest.fixture
def nccl_device_map():
    """A one-process group with NCCL's device map: a backend for CUDA tensors only."""
    with process_group("cuda:gloo"):
        yield


def test_under_nccls_device_map_a_cpu_tensor_given_to_a_collective_raises(nccl_device_map):
    with pytest.raises(RuntimeError, match="device type cpu"):
        dist.all_reduce(torch.tensor(1.0))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the process's device must be a GPU")
def test_under_nccls_device_map_the_helper_sums_a_cpu_scalar_on_the_process_device(
        nccl_device_map):
    device = torch.device("cuda", torch.cuda.current_device())
    out = collective.all_sum(torch.tensor(2.5), device)  # made on the CPU, as a log line's is
    assert out.device == device and out.item() == 2.5
    assert runs.all_sum(torch.tensor([1.0, 2.0]), runs.Dist(0, 1, device)).device == device
    assert collective.broadcast_object("step-00000001", device) == "step-00000001"


def test_the_helper_hands_the_collective_a_tensor_on_the_process_device(monkeypatch,
                                                                        nccl_device_map):
    """Without a GPU: the process's device is "meta" and the collective, as NCCL's map does,
    refuses any tensor on another device; a scalar made on the CPU goes through runs.all_sum all
    the same."""
    process = torch.device("meta")
    seen = []

    def all_reduce(t, *a, **kw):
        seen.append(t.device)
        if t.device != process:
            raise RuntimeError(f"No backend type associated with device type {t.device.type}")
    monkeypatch.setattr(dist, "all_reduce", all_reduce)
    out = runs.all_sum(torch.tensor(3.0), runs.Dist(0, 2, process))
    assert seen == [process] and out.device == process
    boxes = []
    monkeypatch.setattr(dist, "broadcast_object_list",
                        lambda box, src=0, group=None, device=None: boxes.append(device))
    collective.broadcast_object("name", process)
    assert boxes == [process]


def test_the_process_group_timeout_outlasts_rank_0s_export_at_a_save(monkeypatch):
    """NCCL's default is 10 minutes; rank 0 alone writes a sharded save's Hugging Face export (30 GB
    float32 for J1-7B) while the others wait in a barrier."""
    seen = {}
    monkeypatch.setattr(dist, "init_process_group", lambda backend, **kw: seen.update(kw))
    for k, v in (("RANK", "0"), ("WORLD_SIZE", "2"), ("LOCAL_RANK", "0")):
        monkeypatch.setenv(k, v)
    runs.setup_dist("cpu")
    assert seen["timeout"].total_seconds() >= 3600
