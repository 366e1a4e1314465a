"""--shard (FSDP2, j1_min/shard.py) under torchrun with 2 CPU processes and gloo: the 1-process loss
curve, half of every parameter per rank, bit-identical kill-and-resume, an export that transformers
loads, a memory plan that matches the sharded tensors, and bad configurations stopped before any
work."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import train_grpo
import train_sft
from j1_min.checkpoint import load_model
from test_train_grpo import args as rl_args, log_of, setup  # noqa: F401  (setup: a module fixture)
from test_train_sft import files  # noqa: F401  (a module fixture)

ROOT = Path(__file__).resolve().parents[1]


def torchrun(script, *args, nproc: int = 2, check: bool = True):
    """Run a script of this checkout under torchrun (the worktree's j1_min first on the path, one
    thread each)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={nproc}", str(ROOT / script), *map(str, args)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    if check:
        assert done.returncode == 0, done.stderr[-3000:]
    return done


def sft_args(files, out, *extra):
    return ["--data", files / "train.jsonl", "--init", files / "init", "--out", out, "--batch", "8",
            "--micro", "2", "--steps", "4", "--lr", "3e-3", "--warmup", "2", "--eval-every", "0",
            "--save-every", "100", "--seed", "1", *extra]


def losses(out):
    return [r["loss"] for r in map(json.loads,
                                   Path(out).with_suffix(".log.jsonl").read_text().splitlines())
            if "loss" in r]


def max_diff(a, b) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    return max((sa[k] - sb[k]).abs().max().item() for k in sa)


@pytest.fixture(scope="module")
def sft_runs(files, tmp_path_factory):
    """One process; 2 sharded processes in one go; and the same killed after step 2 and resumed."""
    d = tmp_path_factory.mktemp("shard_sft")
    train_sft.main(list(map(str, sft_args(files, d / "one.pt"))))
    torchrun("train_sft.py", "--shard",
             *sft_args(files, d / "full", "--val", files / "val.jsonl", "--eval-items",
                                                  # the final evaluation: all ranks
                                                  "2", "--max-new-tokens", "8"))
    torchrun("train_sft.py", "--shard", *sft_args(files, d / "part", "--stop-after", "2"))
    torchrun("train_sft.py", "--shard", *sft_args(files, d / "part", "--resume", d / "part",
                                                  "--activation-checkpointing"))
    return d


def test_sharded_sft_gives_the_one_process_loss_curve(sft_runs):
    one, two = losses(sft_runs / "one.pt"), losses(sft_runs / "full")
    assert len(one) == len(two) == 4 and one[-1] < one[0]
    assert max(abs(a - b) for a, b in zip(one, two)) < 1e-5
    assert max_diff(load_model(sft_runs / "one.pt")[0], load_model(sft_runs / "full")[0]) < 1e-5


def test_kill_and_resume_of_a_sharded_run_is_bit_identical(sft_runs):
    """The resumed half also turns on activation checkpointing, which recomputes the same ops: still
    exact."""
    assert max_diff(load_model(sft_runs / "full")[0], load_model(sft_runs / "part")[0]) == 0.0
    assert losses(sft_runs / "part") == losses(sft_runs / "full")
    steps = sorted(p.name for p in (sft_runs / "part").iterdir())
    # older step folders are removed once `latest` moves on
    assert steps == ["latest", "step-00000004"]
    assert sorted(p.name for p in (sft_runs / "part" / "step-00000004" / "dcp").iterdir()) == [
        ".metadata", "__0_0.distcp", "__1_0.distcp"]  # each rank wrote its own shard


def test_the_exported_folder_loads_in_transformers_with_the_same_logits(sft_runs):
    import transformers
    folder = sft_runs / "full" / "step-00000004" / "model"
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name
                                                                      for p in folder.iterdir()}
    theirs = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    ours = load_model(sft_runs / "one.pt")[0]  # the 1-process run's weights
    x = torch.randint(0, ours.config.vocab_size, (2, 30),
                      generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (theirs(x).logits - ours(x)).abs().max() < 1e-4
    # the run folder loads as a model too
    assert load_model(sft_runs / "full")[2]["run_config"]["shard"]


def test_a_large_export_is_split_into_files_named_by_an_index(files, tmp_path):
    import transformers
    from j1_min.checkpoint import save_hf
    model = load_model(files / "init")[0]
    save_hf(model, tmp_path / "split", max_shard_bytes=20_000)
    names = sorted(p.name for p in (tmp_path / "split").iterdir())
    assert "model.safetensors.index.json" in names and sum(n.startswith("model-0")
                                                           for n in names) > 2
    theirs = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "split").eval()
    x = torch.randint(0, model.config.vocab_size, (1, 20),
                      generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert (theirs(x).logits - model(x)).abs().max() < 1e-4
    assert max_diff(load_model(tmp_path / "split")[0], model) == 0.0


# noqa: F811
def test_sharded_rl_gives_the_one_process_run_and_its_reference_is_sharded_too(setup, tmp_path):
    """GRPO with β > 0 (a sharded reference): the same rollouts (a row's samples depend on its seed,
    prompt and stream, not on the rank that draws it), the same rewards, gradient norms within 1e-5,
    and the same weights."""
    extra = ["--steps", "3", "--beta", "0.1"]
    train_grpo.main(list(map(str, rl_args(setup, tmp_path / "one.pt", *extra))))
    torchrun("train_grpo.py", "--shard", *rl_args(setup, tmp_path / "two", *extra))
    one = [r for r in log_of(tmp_path / "one.pt") if "reward" in r]
    two = [r for r in log_of(tmp_path / "two") if "reward" in r]
    assert len(one) == 3 and one[-1]["k3"] > 0  # the reference is in the loss
    # all processes' figures (k3 is rank 0's)
    for key in ("reward", "accuracy", "flat_groups", "loss_tokens"):
        assert [r[key] for r in one] == [r[key] for r in two], key
    assert max(abs(a["grad_norm"] - b["grad_norm"]) for a, b in zip(one, two)) < 1e-5
    assert max_diff(load_model(tmp_path / "one.pt")[0], load_model(tmp_path / "two")[0]) < 1e-5


# noqa: F811
def test_sharded_rl_in_bfloat16_with_a_reference_resumes_bit_identically(setup, tmp_path):
    """REINFORCE++ with β > 0 under bf16 mixed precision (bf16 compute, float32 master weights and
    reduction), with evaluations (a gathered policy on every rank) during the run: killed after step
    1 and resumed, it ends where the uninterrupted run ends, and judge.py reads the run folder."""
    extra = ["--steps", "2", "--algo", "reinforce_pp", "--beta", "0.05", "--dtype", "bfloat16",
             "--val", setup / "rl.jsonl", "--eval-items", "4", "--eval-every", "1"]
    torchrun("train_grpo.py", "--shard", *rl_args(setup, tmp_path / "full", *extra))
    torchrun("train_grpo.py", "--shard",
             *rl_args(setup, tmp_path / "part", *extra, "--stop-after", "1"))
    torchrun("train_grpo.py", "--shard",
             *rl_args(setup, tmp_path / "part", *extra, "--resume", tmp_path / "part"))
    assert max_diff(load_model(tmp_path / "full")[0], load_model(tmp_path / "part")[0]) == 0.0
    steps = lambda out: [r for r in log_of(out) if "reward" in r]
    assert [r["reward"] for r in steps(tmp_path / "full")] == [r["reward"]
                                                               for r in steps(tmp_path / "part")]
    assert any("val_acc_budget0" in r for r in log_of(tmp_path / "part"))
    import judge
    judge.main(["--ckpt", str(tmp_path / "part"), "--data", str(setup / "rl.jsonl"), "--limit", "2",
                "--max-new-tokens", "8"])


@pytest.mark.parametrize("config", ["tiny", "26m"])
def test_each_rank_holds_half_of_every_parameter_and_the_memory_plan_is_exact(config):
    done = torchrun("scripts/memory_plan.py", "--config", config, "--measure")
    reports = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(reports) == 2
    sys.path.insert(0, str(ROOT / "scripts"))
    from memory_plan import model_config, shapes
    full = {n: torch.Size(s).numel() for n, s in shapes(model_config(config)).items()}
    for r in reports:
        planned, measured = r["planned"], r["measured"]
        for key in ("parameters", "gradients", "adamw", "reference", "activations_per_token",
                    "activations_per_token_checkpointed"):
            assert planned[key] == measured[key], (key, planned[key], measured[key])
        assert all(abs(measured["local_elements"][n] / full[n] - 0.5) <= 0.01 for n in full)
    assert sum(r["measured"]["parameters"] for r in reports) == 4 * planned["params"]


def test_the_plan_says_j1_7b_fits_8_gpus_of_80_gb_only_with_activation_checkpointing_at_32k_tokens():  # noqa: E501
    sys.path.insert(0, str(ROOT / "scripts"))
    from memory_plan import model_config, plan
    p = plan(model_config("j1-7b"), 8, "bfloat16", tokens=32768, rollout_tokens=64 * 2048)
    assert p["params"] == 7_615_616_512
    assert p["parameters"] + p["gradients"] + p["adamw"] == pytest.approx(
        16 * 7.6156e9 / 8, rel=1e-3)
    assert p["train_peak"] > 80e9 > p["train_peak_checkpointed"] and p["rollout_peak"] < 80e9


@pytest.mark.parametrize("case,message", [
    ("no_torchrun", "--shard shards the model over torchrun's processes"),
    ("pt_out", "--shard writes a run folder"),
    ("pt_resume", "not a sharded run folder"),
    ("folder_resume_without_shard", "a sharded run folder; continue it with --shard"),
])
def test_bad_sharded_configurations_stop_before_any_work(files, tmp_path, capsys, monkeypatch, case,
                                                         message):
    out, extra = tmp_path / "run", ["--shard"]
    if case != "no_torchrun":
        # as torchrun sets it; each check fires before the process group
        monkeypatch.setenv("RANK", "0")
    if case == "pt_out":
        out = tmp_path / "run.pt"
    elif case == "pt_resume":
        (tmp_path / "ddp.pt").write_bytes(b"")
        extra += ["--resume", tmp_path / "ddp.pt"]
    elif case == "folder_resume_without_shard":
        (tmp_path / "old").mkdir()
        (tmp_path / "old" / "latest").write_text("step-00000002\n")
        extra = ["--resume", tmp_path / "old"]
        out = tmp_path / "o.pt"
    with pytest.raises(SystemExit) as e:
        train_sft.run_cli(list(map(str, sft_args(files, out, *extra))))
    assert e.value.code == 2 and message in capsys.readouterr().err
    assert not out.exists() and not out.with_suffix(".log.jsonl").exists()


def test_a_world_size_that_does_not_divide_the_batch_stops_with_a_message(files, tmp_path):
    done = torchrun("train_sft.py", "--shard", *sft_args(files, tmp_path / "run", "--batch", "7"),
                    check=False)
    assert done.returncode != 0 \
        and "error: --batch 7 must be divisible by the number of processes (2)" in done.stderr
    assert not (tmp_path / "run").exists()
