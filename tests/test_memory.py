"""What the memory plan (scripts/memory_plan.py) and docs/scaling_out.md rely on: the gathered
rollout copy is freed before the update, a sharded run loads on the CPU and shards before anything
reaches the device, a sharded model's root does not stay gathered after a forward without backward,
the trainers' master weights and AdamW state are float32 whatever the checkpoint holds, and the C
allocator's freed memory goes back to the system after each training step."""
from __future__ import annotations

import copy
import weakref

import pytest
import torch

import train_grpo
import train_sft
from conftest import process_group
from j1_min import rl, runs, shard
from j1_min.checkpoint import load_model, read_pt, save_hf
from j1_min.model import ModelConfig, Transformer
from test_train_grpo import args as rl_args, setup  # noqa: F401  (setup: a module fixture)
from test_train_sft import files  # noqa: F401  (a module fixture)


def bf16_copy(src, dst):
    """The Hugging Face folder `src` saved again with bfloat16 weights (config.json says so), as
    Qwen2.5-7B, J1-7B's base, is published."""
    model, tok, _ = load_model(src)
    save_hf(model.to(torch.bfloat16), dst, tok)
    assert load_model(dst, device="meta")[0].lm_head.weight.dtype == torch.bfloat16
    return dst


def test_the_gathered_rollout_copy_is_freed_before_the_update(setup, tmp_path, monkeypatch):
    """Under --shard, shard.full_model gathers a full float32 copy of the policy for the rollout
    (30.5 GB per rank for J1-7B). The plan counts it in the rollout, not in the update: no
    reference to it may survive into the update, not even an argument of rl.step."""
    copies, at_update = [], []
    monkeypatch.setattr(shard, "full_model",
                        lambda model: copies.append(weakref.ref(c := copy.deepcopy(model))) or c)
    update = rl.policy_update

    def policy_update(*a, **kw):
        at_update.append([w() is None for w in copies])  # no gc.collect(): the refcount frees it
        return update(*a, **kw)
    monkeypatch.setattr(rl, "policy_update", policy_update)
    train_grpo.main(rl_args(setup, tmp_path / "rl.pt", "--steps", "2"))
    assert len(copies) == 2 and at_update == [[True], [True, True]]


def test_a_sharded_run_loads_on_the_cpu_and_shards_the_policy_before_loading_the_reference(
        setup, tmp_path, monkeypatch):
    """Loaded on the device, every rank would first hold the whole float32 policy and reference
    there (61 GB for J1-7B); loaded on the CPU, fully_shard moves one block at a time. The process's
    device here is "meta", standing for a GPU: nothing may be loaded onto it."""
    events = []

    def recording(name, load):
        def f(*a, **kw):
            events.append((name, torch.device(kw.get("device") or "cpu"), kw.get("dtype")))
            return load(*a, **{**kw, "device": "cpu"})
        return f
    monkeypatch.setattr(train_grpo, "load_judge", recording("policy", train_grpo.load_judge))
    monkeypatch.setattr(train_grpo, "load_model", recording("reference", train_grpo.load_model))
    monkeypatch.setattr(shard, "wrap", lambda model, *a, shard=True, **kw: events.append(
        ("wrap", next(model.parameters()).device, shard)))
    a = train_grpo.parse_args(rl_args(setup, tmp_path / "run", "--shard", "--beta", "0.1"))
    train_grpo.setup(a, runs.Dist(0, 2, torch.device("meta")))
    cpu = torch.device("cpu")
    assert events == [("policy", cpu, torch.float32), ("wrap", cpu, True),
                      ("reference", cpu, torch.float32), ("wrap", cpu, True)]


@pytest.fixture
def one_process_group():
    with process_group("gloo"):
        yield


def test_a_sharded_models_root_is_resharded_after_a_forward_without_backward(one_process_group,
                                                                             tmp_path):
    """FSDP2 reshards a root (embeddings, final norm, lm_head: 1.1B parameters for J1-7B) only after
    a backward; the frozen reference never runs one, nor does the finiteness probe."""
    from torch.distributed.tensor import DTensor
    cfg = ModelConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                      tie_word_embeddings=False)
    ref = Transformer(cfg)
    ref.init_weights(seed=0)
    shard.wrap(ref.requires_grad_(False))
    assert isinstance(ref.lm_head.weight, DTensor)
    ids = torch.randint(0, 64, (2, 8), generator=torch.Generator().manual_seed(0))
    index = torch.arange(4, 8).expand(2, 4)
    cfg_rl = rl.RLConfig(algo="grpo", group=2, temperature=1.0, top_k=0, top_p=1.0,
                         max_new_tokens=4, clip_eps=0.2, clip_eps_high=None, beta=0.1, gamma=1.0,
                         loss_type="dapo", scale_rewards="group", format_penalty=0.0,
                         dynamic_sampling=False, ppo_epochs=1, micro=2, clip_grad=1.0,
                         dtype="float32")
    rl.completion_logprobs(ref, ids, ids, index, cfg_rl)
    assert all(isinstance(p, DTensor) for p in ref.parameters())  # the root's too
    assert runs.Saver(tmp_path / "run", True, list(range(8))).finite(ref)
    assert all(isinstance(p, DTensor) for p in ref.parameters())


def test_a_bf16_checkpoint_loads_as_float32_master_weights_on_any_device(setup, files, tmp_path):
    """The process's device is "meta", standing for a GPU, where checkpoint.resolve_dtype would take
    the checkpoint's own dtype; the trainers ask for float32 (--dtype is the compute dtype)."""
    ckpt = bf16_copy(setup / "teacher", tmp_path / "bf16_rl")
    a = train_grpo.parse_args(rl_args(setup, tmp_path / "rl.pt", "--beta", "0.1")
                              + ["--ckpt", str(ckpt)])
    _, policy, ref, *_ = train_grpo.setup(a, runs.Dist(0, 1, torch.device("meta")))
    assert {p.dtype for p in [*policy.parameters(), *ref.parameters()]} == {torch.float32}
    init = bf16_copy(files / "init", tmp_path / "bf16_sft")
    a = train_sft.parse_args(["--data", str(files / "train.jsonl"), "--init", str(init), "--out",
                              str(tmp_path / "sft.pt")])
    _, model, *_ = train_sft.setup(a, runs.Dist(0, 1, torch.device("meta")))
    assert {p.dtype for p in model.parameters()} == {torch.float32}


def adamw_dtypes(path) -> set:
    state = read_pt(path)["train_state"]["optimizer"]["state"]
    return {t.dtype for s in state.values() for k, t in s.items() if k != "step"}


def test_a_bf16_checkpoint_trains_float32_weights_and_float32_adamw_state(setup, files, tmp_path):
    ckpt = bf16_copy(setup / "teacher", tmp_path / "bf16_rl")
    train_grpo.main(rl_args(setup, tmp_path / "rl.pt", "--steps", "1", "--dtype", "bfloat16")
                    + ["--ckpt", str(ckpt)])
    init = bf16_copy(files / "init", tmp_path / "bf16_sft")
    train_sft.main(["--data", str(files / "train.jsonl"), "--init", str(init), "--out",
                    str(tmp_path / "sft.pt"), "--steps", "1", "--batch", "4", "--micro", "4",
                    "--eval-every", "0", "--dtype", "bfloat16"])
    for out in (tmp_path / "rl.pt", tmp_path / "sft.pt"):
        assert {t.dtype for t in read_pt(out)["model"].values()} == {torch.float32}, out
        assert adamw_dtypes(out) == {torch.float32}, out


def test_loading_converts_one_tensor_at_a_time_so_no_bf16_original_outlives_the_load():
    """Each rank of a sharded run holds its float32 copy on the CPU until it is sharded
    (shard.load_device); a bf16 checkpoint must not add its own 2 bytes per parameter on top (the
    plan's host row counts 4)."""
    from j1_min.checkpoint import build_model
    cfg = ModelConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                      tie_word_embeddings=False)
    model = Transformer(cfg)
    model.init_weights(seed=0)
    state = {k: v.to(torch.bfloat16) for k, v in model.state_dict().items()}
    originals = [weakref.ref(t) for t in state.values()]
    loaded = build_model(cfg, state, "test", torch.float32, "cpu")
    assert all(w() is None for w in originals)
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}


def test_the_plan_prints_each_phases_peak_and_counts_the_rollout_copy_in_the_rollout_only(capsys):
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    from memory_plan import main, model_config, plan
    p = plan(model_config("j1-7b"), 8, "bfloat16", tokens=32768, rollout_tokens=131072)
    states = p["parameters"] + p["adamw"] + p["reference"]
    assert p["rollout_peak"] == states + p["rollout_copy"] + 131072 * p["kv_cache_per_token"]
    assert p["train_peak_checkpointed"] == pytest.approx(
        states + p["gradients"] + p["gathered_blocks"] + p["gathered_root"]
        + 32768 * p["activations_per_token_checkpointed"])  # no rollout copy
    # load: the shards and one unsharded float32 group, the root (2 x 152064 x 3584 + 3584)
    assert p["load_peak"] == p["parameters"] + p["reference"] + 4 * 1_089_998_336
    assert max(p["load_peak"], p["rollout_peak"], p["train_peak_checkpointed"],
               p["save_peak"]) < 80e9 < p["train_peak"]
    main(["--config", "j1-7b", "--world", "8", "--tokens", "32768", "--rollout-tokens", "131072"])
    out = capsys.readouterr().out
    for phase in ("load:", "rollout:", "update:", "save:"):
        assert phase in out, phase


def rss_mb() -> float:
    return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) / 1024


@pytest.mark.skipif(not runs.release_memory(), reason="not Linux with glibc: release_memory is a "
                                                      "no-op")
def test_release_memory_gives_the_freed_heap_back():
    """Tensors of changing sizes (1-8 MB, as micro-batches cut to their longest row are), all freed:
    glibc keeps much of that heap until it is trimmed."""
    import random
    runs.release_memory()
    start = rss_mb()
    rng, live = random.Random(0), []
    for _ in range(400):
        live.append(torch.ones(rng.randint(1, 8) * 2**18))
        if len(live) > 20:
            live.pop(rng.randrange(len(live)))
    live.clear()
    kept = rss_mb() - start
    if kept < 50:
        pytest.skip(f"this allocator kept only {kept:.0f} MB of the freed tensors: nothing to test")
    assert runs.release_memory()
    assert rss_mb() - start < kept / 2
