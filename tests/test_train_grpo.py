"""train_grpo.py: the loss sees only sampled completion tokens, sampler and trainer log-probs agree,
the loop learns from the reward, resumes exactly, and refuses bad input with a clear message."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

import train_grpo
from conftest import tiny_teacher
from j1_min.checkpoint import load_model
from j1_min.data import read_pairs, write_jsonl
from j1_min.judge_format import (build_prompt, completion_text, encode_prompt, forcing_kwargs,
                                 parse_verdict)
from j1_min.rl import (RLConfig, group_budgets, micro_batches, parse_budget, policy_update,
                       rollout_tensors)
from j1_min.runs import Dist
from j1_min.logprobs import selected_logprobs
from j1_min.sampling import Generation, generate
from j1_min.tasks import make_pairs
from j1_min.tokenizer import Tokenizer, train_bpe


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """RL pairs all labelled A, and the coin-flip teacher of conftest: after the forced end of
    thinking and the answer prefix `\\n[[` it says A or B with equal probability. The reward (1 for
    A) is all there is to learn."""
    d = tmp_path_factory.mktemp("grpo")
    pairs = make_pairs(64, "train", seed=0)
    for r in pairs:
        if r["label"] == "B":
            r["response_a"], r["response_b"], r["label"] = r["response_b"], r["response_a"], "A"
    write_jsonl(d / "rl.jsonl", pairs)
    tok = train_bpe([build_prompt(r["question"], r["response_a"], r["response_b"])
                     + "\n</think>\n[[A]] [[B]]"
                     for r in pairs] * 2, 400)
    # keeps the format: the verdict is what is learned
    tiny_teacher(d / "teacher", tok, strength=8.0)
    return d


def args(setup, out, *extra):
    return ["--ckpt", str(setup / "teacher"), "--data", str(setup / "rl.jsonl"), "--out", str(out),
            "--prompts", "4", "--group", "4", "--max-new-tokens", "16", "--max-think-tokens", "4",
            "--budget", "1", "--lr", "3e-3", "--steps", "4", "--eval-every", "0", "--seed", "3",
            *map(str, extra)]


def log_of(out):
    return [json.loads(l) for l in out.with_suffix(".log.jsonl").read_text().splitlines()]


def share_of_a(path, setup) -> float:
    """Share of `[[A]]` verdicts in 128 rollouts sampled as train_grpo samples them (temperature 1,
    budget 1)."""
    model, tok = load_model(path)[0], Tokenizer.from_path(setup / "teacher")
    prompts = [encode_prompt(tok, r["question"], r["response_a"], r["response_b"])
               for r in read_pairs(setup / "rl.jsonl") for _ in range(2)]
    gens = generate(model, prompts, 16, temperature=1.0, seed=123, **forcing_kwargs(tok, 1, 4))
    return sum(parse_verdict(completion_text(tok, g)) == "A" for g in gens) / len(gens)


def test_rollout_mask_keeps_only_sampled_completion_tokens():
    prompts = [[1, 2, 3], [4, 5]]
    gens = [Generation(tokens=[7, 8, 9], forced=[False, True, False], logprobs=[-0.1, 0.0, -0.3]),
            Generation(tokens=[6], forced=[False], logprobs=[-0.2])]
    inp, tgt, index, old, mask = rollout_tensors(prompts, gens, 5, "cpu")
    assert mask.tolist() == [[1, 0, 1, 0, 0], [1, 0, 0, 0, 0]]  # no prompt, forced or padding token
    assert tgt.gather(1, index)[0, :3].tolist() == [7, 8,
                                                    9] and tgt.gather(1, index)[1, 0].item() == 6
    assert old[0, :3].tolist() == pytest.approx([-0.1, 0.0, -0.3])
    # the model reads prompt + completion, shifted by one
    assert inp[0, :5].tolist() == [1, 2, 3, 7, 8]


def test_sampler_logprobs_equal_the_trainers_recomputation(setup):
    model = load_model(setup / "teacher")[0]
    tok = Tokenizer.from_path(setup / "teacher")
    recs = read_pairs(setup / "rl.jsonl")[:3]
    prompts = [encode_prompt(tok, r["question"], r["response_a"], r["response_b"]) for r in recs
               for _ in range(2)]
    gens = generate(model, prompts, 12, temperature=0.7, seed=1, **forcing_kwargs(tok, 1, 4))
    inp, tgt, index, old, mask = rollout_tensors(prompts, gens, 12, "cpu")
    with torch.no_grad():
        new = selected_logprobs(model, inp, tgt, temperature=0.7).gather(1, index)
    assert mask.sum() > 6 and (1 - mask).sum() > 0  # both sampled and forced tokens are present
    assert ((new - old).abs() * mask).max() < 1e-4


class Capture:
    """An optimizer that only keeps the gradient it is asked to step with."""

    def __init__(self, params):
        self.params, self.grads = list(params), None

    def step(self):
        self.grads = [p.grad.clone() for p in self.params]

    def zero_grad(self, set_to_none=True):
        for p in self.params:
            p.grad = None


@pytest.mark.parametrize("loss_type", ["dapo", "grpo"])
def test_micro_batches_by_length_give_the_gradient_of_the_whole_padded_batch(setup, loss_type):
    """Completions of 1-12 tokens after prompts of 3-6: micro-batches of 2 rows, longest first, each
    cut to the length its rows need, give the gradient of one forward and backward over all rows
    padded to the longest (the update before micro-batching by length)."""
    model = load_model(setup / "teacher")[0]
    g = torch.Generator().manual_seed(0)
    lengths = (12, 1, 7, 3, 12, 5, 9, 2)
    prompts = [[5 + i] * (3 + i % 4) for i in range(8)]
    gens = [Generation(tokens=torch.randint(10, 300, (n,), generator=g).tolist(),
                       forced=[False] * n, logprobs=[0.0] * n) for n in lengths]
    inp, tgt, index, _, mask = rollout_tensors(prompts, gens, 12, "cpu")
    need = [len(p) + n - 1 for p, n in zip(prompts, lengths)]  # inputs up to the last prediction
    batches = micro_batches(index, 2)
    assert [n for _, n in batches] == sorted(need, reverse=True)[::2]  # each cut to its longest
    assert [sorted(r.tolist()) for r, _ in batches] == [[0, 4], [2, 6], [3, 5], [1, 7]]
    adv = torch.randn(8, generator=g)
    grads = []
    for micro in (2, 8):
        m = copy.deepcopy(model)
        opt = Capture(m.parameters())
        cfg = RLConfig(algo="grpo", group=4, temperature=1.0, top_k=0, top_p=1.0,
                       max_new_tokens=12, clip_eps=0.2, clip_eps_high=None, beta=0.0, gamma=1.0,
                       loss_type=loss_type, scale_rewards="group", format_penalty=0.0,
                       dynamic_sampling=False, ppo_epochs=1, micro=micro, clip_grad=0.0,
                       dtype="float32")
        policy_update(m, opt, inp, tgt, index, mask, adv, cfg, Dist())
        grads.append(opt.grads)
    assert max(a.abs().max() for a in grads[0]) > 1e-3
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-7) for a, b in zip(*grads))


@pytest.mark.parametrize("algo", ["grpo", "reinforce_pp", "reinforce_pp_baseline"])
def test_rl_raises_the_share_of_the_rewarded_verdict(setup, tmp_path, algo):
    before = share_of_a(setup / "teacher", setup)
    train_grpo.main(args(setup, tmp_path / "rl.pt", "--steps", "8", "--algo", algo))
    after = share_of_a(tmp_path / "rl.pt", setup)
    log = [r for r in log_of(tmp_path / "rl.pt") if "reward" in r]
    assert 0.35 < before < 0.65  # the coin flip (128 samples)
    assert after > 0.85, (before, after)
    # sampler and trainer log-probs agree (same temperature, same dtype)
    assert all(r["logp_diff_max"] < 1e-4 for r in log)
    assert all(r["waits"] > 0 for r in log)  # budget forcing ran during rollouts


@pytest.mark.parametrize("extra",
                         [[], ["--beta", "0.1"], ["--algo", "reinforce_pp", "--beta", "0.1"],
                                   ["--budget", "0-3"]])
def test_kill_and_resume_gives_identical_weights(setup, tmp_path, extra):
    """With β > 0 too: the KL reference after --resume is --ckpt's model, as in the uninterrupted
    run."""
    train_grpo.main(args(setup, tmp_path / "full.pt", *extra))
    train_grpo.main(args(setup, tmp_path / "part.pt", "--stop-after", "2", *extra))
    train_grpo.main(args(setup, tmp_path / "part.pt", "--resume", tmp_path / "part.pt", *extra))
    a, b = load_model(tmp_path
                      / "full.pt")[0].state_dict(), load_model(tmp_path / "part.pt")[0].state_dict()
    assert max((a[k] - b[k]).abs().max().item() for k in a) == 0.0  # bit-identical on CPU
    rewards = [r["reward"] for r in log_of(tmp_path / "full.pt") if "reward" in r]
    assert rewards == [r["reward"] for r in log_of(tmp_path / "part.pt") if "reward" in r]


def test_a_budget_range_draws_each_groups_budget_uniformly_from_the_seed_and_step():
    assert parse_budget("2") == (2, 2) and parse_budget("0-3") == (0, 3)
    for bad in ("3-1", "-1", "a", "0-3-4", ""):
        with pytest.raises(ValueError, match="--budget"):
            parse_budget(bad)
    draws = [b for step in range(500) for b in group_budgets((0, 3), 8, step, seed=1)]
    counts = [draws.count(b) for b in range(4)]
    assert min(counts) > 0.2 * len(draws) and max(counts) < 0.3 * len(draws)  # uniform over 0..3
    assert group_budgets((0, 3), 8, 7, 1) == group_budgets((0, 3), 8, 7,
                                                           1) != group_budgets((0, 3), 8, 7, 2)
    assert set(group_budgets((2, 2), 8, 7, 1)) == {2}


def test_budget_range_and_flat_share_are_logged_per_step(setup, tmp_path):
    out = tmp_path / "range.pt"
    train_grpo.main(args(setup, out, "--budget", "0-3", "--max-think-tokens", "12"))
    steps = [r for r in log_of(out) if "reward" in r]
    assert [r["budget_mean"] for r in steps] == [sum(group_budgets((0, 3), 4, s, 3)) / 4
                                                 for s in range(4)]
    assert all(r["flat_share"] == r["flat_groups"] / 4 and r["waits"] <= r["budget_mean"]
               for r in steps)
    assert len({r["budget_mean"]
                for r in steps}) > 1 and log_of(out)[0]["config"]["budget"] == "0-3"


def test_nan_log_probs_stop_the_run_with_a_message_and_nothing_is_saved(setup, tmp_path, capsys):
    # one NaN weight in lm_head makes every log-probability NaN: the ratio is NaN, and an update
    # would spread it
    import shutil

    from safetensors.torch import load_file, save_file
    ckpt = tmp_path / "nan_teacher"
    shutil.copytree(setup / "teacher", ckpt)
    w = load_file(ckpt / "model.safetensors")
    w["lm_head.weight"][5, 0] = float("nan")
    save_file(w, ckpt / "model.safetensors", metadata={"format": "pt"})
    out = tmp_path / "nan.pt"
    with pytest.raises(SystemExit) as e:
        train_grpo.run_cli(["--ckpt", str(ckpt), *args(setup, out, "--save-every", "1")[2:]])
    assert e.value.code == 2
    assert "non-finite" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("case,message", [
    ("no_tokenizer", "has no tokenizer"), ("no_labels", "label"), ("group1", "at least 2"),
    ("no_think_end", "</think>"), ("baseline_gamma", "--gamma 1"), ("budget_range", "--budget"),
])
def test_bad_input_stops_with_a_clear_message(setup, tmp_path, case, message, capsys):
    import shutil
    ckpt, data, extra = setup / "teacher", setup / "rl.jsonl", []
    if case == "no_tokenizer":
        ckpt = tmp_path / "bare"
        shutil.copytree(setup / "teacher", ckpt)
        (ckpt / "tokenizer.json").unlink()
    elif case == "no_labels":
        data = tmp_path / "nolabel.jsonl"
        data.write_text(json.dumps({"question": "q", "response_a": "a", "response_b": "b"}) + "\n")
    elif case == "group1":
        extra = ["--group", "1"]
    elif case == "budget_range":
        extra = ["--budget", "3-1"]
    elif case == "baseline_gamma":
        extra = ["--algo", "reinforce_pp_baseline", "--gamma", "0.9"]
    elif case == "no_think_end":  # a word-level vocabulary with no way to write </think>
        from tokenizers import Tokenizer as HF, models, pre_tokenizers
        words = ["[UNK]", "<|endoftext|>", "<|im_start|>", "<|im_end|>", "What", "is", "Wait"]
        hf = HF(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
        hf.pre_tokenizer = pre_tokenizers.Whitespace()
        hf.add_special_tokens(words[1:4])
        ckpt = tmp_path / "words"
        shutil.copytree(setup / "teacher", ckpt)
        (ckpt / "tokenizer.json").write_text(hf.to_str())
    with pytest.raises(SystemExit) as e:
        train_grpo.run_cli(["--ckpt", str(ckpt), "--data", str(data), "--out",
                            str(tmp_path / "o.pt"), *extra])
    assert e.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("extra", [[], ["--algo", "reinforce_pp", "--beta", "0.05"]])
def test_runs_under_torchrun_with_two_processes(setup, tmp_path, extra):
    """Each rank samples its own groups; DDP averages the gradients; rank 0 alone writes the
    checkpoint and log. REINFORCE++ whitens with both ranks' statistics (the all-reduce must pair up
    on both)."""
    import os
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "ddp.pt"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(root / "train_grpo.py"), *args(setup, out, "--steps", "2", *extra)]
    done = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                          text=True, cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    log = [r for r in log_of(out) if "reward" in r]
    assert [r["step"] for r in log] == [1, 2]  # one line per step: rank 1 does not log
    assert load_model(out)[0] is not None and torch.load(out, weights_only=True)["run_config"][
        "world"] == 2


EMBEDDED = Path(__file__).resolve().parents[1] / "j1_min" / "embedded" / "j1-tiny"
WEAKEN_STEPS, GRPO_STEPS = 20, 20  # SFT steps that plant the bias; GRPO steps that must undo it


@pytest.mark.slow
@pytest.mark.skipif(not EMBEDDED.exists(), reason="needs the embedded judge (issue 7)")
def test_grpo_undoes_a_planted_position_bias_on_the_real_task(tmp_path):
    """The honest learning test (issue 6), on the synthetic task with real rollouts and the real
    reward.

    The weak start is deliberate: the embedded judge after WEAKEN_STEPS SFT steps on teacher traces
    in which 70% of the [[B]] verdicts were rewritten to [[A]], whatever the thinking concluded. Its
    reasoning is intact; its verdict after "So B is right." is now A most of the time, so greedy
    accuracy on 200 held-out pairs falls to about the share of A labels, while sampled rollouts
    still say B often enough for GRPO's groups to differ. (Rewriting all of them leaves every group
    flat, all A, and GRPO has no signal: measured, 0.50 -> 0.50.) GRPO_STEPS steps of GRPO with the
    correctness reward must raise it by at least 0.12: two greedy evaluations of one judge on 200
    independent pairs differ by binomial noise of about sqrt(2 * 0.25 / 200) = 0.05 (one s.d.), so
    0.12 is more than twice that. (Starting from a brief SFT of a new model does not work at this
    size: after 150 steps on an easy split it writes verdicts at chance, and GRPO from there only
    drifted; measured, see issue 6.) Measured on 2 CPU cores (about 4 minutes): 0.50 -> 0.66, no
    verdict 0.0 -> 0.005."""
    import random

    import train_sft
    from j1_min.teacher import teacher_trace
    rng = random.Random(0)
    traces = []
    for r in make_pairs(400, "train", seed=5):
        c = teacher_trace(r["question"], r["response_a"], r["response_b"], rng)["completion"]
        # the planted bias: 70% of B verdicts become A, whatever the thinking concluded
        if rng.random() < 0.7:
            c = c.replace("[[B]]", "[[A]]")
        traces.append({**r, "completion": c})
    write_jsonl(tmp_path / "biased.jsonl", traces)
    write_jsonl(tmp_path / "rl.jsonl", make_pairs(2000, "train", seed=6))
    write_jsonl(tmp_path / "val.jsonl", make_pairs(200, "val", seed=7))
    train_sft.main(["--data", str(tmp_path / "biased.jsonl"), "--init", str(EMBEDDED), "--steps",
                    str(WEAKEN_STEPS), "--batch", "16", "--micro", "16", "--lr", "3e-4", "--warmup",
                    "2", "--seed", "0", "--out", str(tmp_path / "weak.pt")])
    train_grpo.main(["--ckpt", str(tmp_path / "weak.pt"), "--data", str(tmp_path / "rl.jsonl"),
                     "--val", str(tmp_path / "val.jsonl"), "--eval-items", "200", "--eval-every",
                     "0", "--eval-budget", "0", "--steps", str(GRPO_STEPS), "--prompts", "8",
                     "--group", "8", "--lr", "1e-4", "--max-new-tokens", "400", "--seed", "0",
                     "--out", str(tmp_path / "rl.pt")])
    evals = [r for r in log_of(tmp_path / "rl.pt") if "val_acc_budget0" in r]
    (before, after), no_verdict = (e["val_acc_budget0"]
                                   for e in evals), evals[0]["val_no_verdict_budget0"]
    assert [e["step"] for e in evals] == [0, GRPO_STEPS]
    # the weak start writes verdicts: what GRPO fixes is the judgment, not the format
    assert no_verdict < 0.05
    assert after - before >= 0.12, (before, after)


def test_resume_never_overwrites_another_existing_file(setup, tmp_path, capsys):
    train_grpo.main(args(setup, tmp_path / "part.pt", "--stop-after", "1"))
    precious = tmp_path / "pairs.jsonl"
    precious.write_text("precious\n")
    with pytest.raises(SystemExit) as e:
        train_grpo.run_cli(args(setup, precious, "--resume", tmp_path / "part.pt"))
    assert e.value.code == 2 and "--force" in capsys.readouterr().err
    assert precious.read_text() == "precious\n"


def test_resume_with_another_learning_rate_is_refused(setup, tmp_path):
    part = tmp_path / "part.pt"
    train_grpo.main(args(setup, part, "--stop-after", "1"))
    with pytest.raises(ValueError, match="--lr 0.003 -> 0.001"):
        train_grpo.main(args(setup, part, "--resume", part, "--lr", "1e-3"))


@pytest.mark.parametrize("nan_from", [1, 3])
def test_a_non_finite_policy_is_never_saved_and_the_stop_names_a_finite_file_or_none(
        setup, tmp_path, capsys,
                                                                                     monkeypatch,
        nan_from):
    import j1_min.rl as rl
    calls, real = [0], rl.grpo_loss

    def nan_loss(*a, **kw):  # 4 prompts x 4 samples, micro 16: one call per step
        calls[0] += 1
        loss, stats = real(*a, **kw)
        return loss * (float("nan") if calls[0] >= nan_from else 1.0), stats
    monkeypatch.setattr(rl, "grpo_loss", nan_loss)
    out = tmp_path / "n.pt"
    with pytest.raises(SystemExit) as e:
        train_grpo.run_cli(args(setup, out, "--save-every", "1"))
    err = capsys.readouterr().err
    # the RL step's own guard stops at the non-finite gradient, before the optimizer changes any
    # weight
    assert e.value.code == 2 and "is nan" in err and "no update was made" in err \
        and "Traceback" not in err
    if nan_from == 1:
        assert not out.exists()
    else:
        ck = torch.load(out, weights_only=True)
        assert ck["train_state"]["step"] == nan_from - 1 and all(t.isfinite().all()
                                                                 for t in ck["model"].values())


def test_a_prompt_too_long_is_named_at_load_or_skipped_and_counted(setup, tmp_path, capsys):
    pairs = read_pairs(setup / "rl.jsonl")[:6]
    pairs[2] = {**pairs[2], "question": "What is 1 + 1? " * 300}
    data = tmp_path / "rl.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in pairs))
    with pytest.raises(ValueError, match=f"{data}, line 3 \\(id {pairs[2]['id']}\\): .* tokens, "
                                         "over"):
        train_grpo.main(args(setup, tmp_path / "a.pt", "--data", data))
    # no step was run
    assert not (tmp_path / "a.pt").exists() and not (tmp_path / "a.log.jsonl").exists()
    train_grpo.main(args(setup, tmp_path / "b.pt", "--data", data, "--skip-bad", "--steps", "1"))
    assert "--data: skipped 1 bad line (first: " in capsys.readouterr().out
    config = log_of(tmp_path / "b.pt")[0]["config"]
    assert config["skipped_lines"] == 1 and config["rl_items"] == 5
