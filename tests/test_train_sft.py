"""train_sft.py: masked loss, accumulation = one big batch, kill-and-resume = uninterrupted, DDP =
one process."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import train_sft
from j1_min.checkpoint import load_model
from j1_min.sft import sft_batches, sft_example, sft_nll
from j1_min.model import Transformer
from j1_min.tokenizer import train_bpe

ROOT = Path(__file__).resolve().parents[1]


def trace(i: int) -> dict:
    a, b = 10 + i, 3 + i % 7
    right, wrong = a + b, a + b + 10
    label = "A" if i % 2 == 0 else "B"
    ra, rb = (right, wrong) if label == "A" else (wrong, right)
    return {"id": f"t{i}", "question": f"What is {a} + {b}?", "response_a": f"The answer is {ra}.",
            "response_b": f"The answer is {rb}.", "label": label, "verdict": label,
            "has_reflection": False, "source": "test",
            "completion": f"{a} + {b} = {right}.\nA says {ra}. B says {rb}.\nSo {label} is "
                          f"right.\n</think>\n[[{label}]]"}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A traces file, a held-out file, and a tiny random Qwen2 folder with a tokenizer trained on
    the traces."""
    import transformers
    d = tmp_path_factory.mktemp("sft")
    train, val = [trace(i) for i in range(40)], [trace(i) for i in range(100, 108)]
    for name, rows in (("train.jsonl", train), ("val.jsonl", val)):
        (d / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    tok = train_bpe([json.dumps(r) for r in train], vocab_size=300)
    torch.manual_seed(0)
    cfg = transformers.Qwen2Config(vocab_size=tok.vocab_size, hidden_size=32, intermediate_size=64,
                                   num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=2, max_position_embeddings=512,
                                   tie_word_embeddings=True)
    transformers.Qwen2ForCausalLM(cfg).save_pretrained(d / "init")
    (d / "init" / "tokenizer.json").write_text(tok.to_json())
    return d


def run(files, out, *extra):
    args = ["--data", str(files / "train.jsonl"), "--init", str(files / "init"), "--out", str(out),
            "--batch", "8", "--micro", "8", "--steps", "6", "--lr", "3e-3", "--warmup", "2",
            "--eval-every", "0", "--save-every", "100", "--seed", "1", *map(str, extra)]
    train_sft.main(args)
    return load_model(out)[0]


def max_diff(a: Transformer, b: Transformer) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    return max((sa[k] - sb[k]).abs().max().item() for k in sa)


def test_prompt_positions_carry_no_gradient(files):
    from j1_min.tokenizer import Tokenizer
    tok = Tokenizer.from_path(files / "init")
    model = load_model(files / "init")[0]
    ex = [sft_example(tok, trace(i)) for i in range(3)]
    inp, tgt, mask = sft_batches(ex, 3, 0)[0]
    grads = {}

    # the final hidden states: position t feeds only the logits at t
    def keep_grad(module, inputs, output):
        output.register_hook(lambda g: grads.__setitem__("g", g))
    model.model.norm.register_forward_hook(keep_grad)
    sft_nll(model, inp, tgt, mask).backward()
    g = grads["g"].abs().sum(-1)  # (b, T-1): gradient reaching each position's logits
    for r, (ids, n_prompt) in enumerate(sorted(ex, key=lambda e: len(e[0]))):
        assert g[r, :n_prompt - 1].max() == 0  # prompt targets: no gradient
        # every completion target (and <|im_end|>): gradient
        assert (g[r, n_prompt - 1:len(ids) - 1] > 0).all()
        # padding: none
        assert g[r, len(ids) - 1:].max() == 0 if len(ids) - 1 < g.shape[1] else True


def test_gradient_accumulation_equals_one_big_batch(files, tmp_path):
    big = run(files, tmp_path / "big.pt", "--micro", "8")
    acc = run(files, tmp_path / "acc.pt", "--micro", "3")  # micro-batches of 3, 3, 2 sequences
    assert max_diff(big, acc) < 1e-5  # the same update up to float summation order


def test_kill_and_resume_gives_identical_weights(files, tmp_path):
    full = run(files, tmp_path / "full.pt")
    # the process "dies" right after step 3's checkpoint
    run(files, tmp_path / "part.pt", "--stop-after", "3")
    resumed = run(files, tmp_path / "part.pt", "--resume", tmp_path / "part.pt")
    # Bit-identical: the same float32 CPU ops run in the same order on the same data (the data order
    # is a pure function of seed and step, and the optimizer state is restored exactly).
    assert max_diff(full, resumed) == 0.0
    log = [json.loads(l) for l in (tmp_path / "part.log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [1, 2, 3, 4, 5, 6]


def test_ctrl_c_saves_the_step_it_finished_and_resume_goes_on_to_the_same_weights(
        files, tmp_path, monkeypatch, capsys):
    import contextlib
    flag = [False]  # what runs.ctrl_c's handler sets on SIGINT

    @contextlib.contextmanager
    def ctrl_c():
        yield flag
    real = train_sft.train_step

    def step_then_ctrl_c(*a, **kw):
        out = real(*a, **kw)
        flag[0] = True  # Ctrl-C during the first step
        return out
    monkeypatch.setattr(train_sft.runs, "ctrl_c", ctrl_c)
    monkeypatch.setattr(train_sft, "train_step", step_then_ctrl_c)
    out = tmp_path / "part.pt"
    with pytest.raises(SystemExit) as stop:  # a script running it must not go on
        run(files, out)
    assert stop.value.code == 130
    said = capsys.readouterr().out
    assert f"interrupted: saved step 1 to {out}; continue with --resume {out}" in said
    monkeypatch.undo()
    resumed = run(files, out, "--resume", out)
    assert max_diff(run(files, tmp_path / "full.pt"), resumed) == 0.0


def test_two_processes_give_the_loss_curve_of_one(files, tmp_path):
    def curve(out, nproc):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={nproc}", str(ROOT / "train_sft.py")] if nproc > 1 else [
                   sys.executable, str(ROOT / "train_sft.py")]
        cmd += ["--data", str(files / "train.jsonl"), "--init", str(files / "init"), "--out",
                str(out), "--batch", "8", "--micro", "2", "--steps", "4", "--eval-every", "0",
                "--seed", "1"]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
        assert done.returncode == 0, done.stderr[-3000:]
        return [r["loss"] for r in map(json.loads,
                                       out.with_suffix(".log.jsonl").read_text().splitlines())
                if "loss" in r]
    one, two = curve(tmp_path / "one.pt", 1), curve(tmp_path / "two.pt", 2)
    assert len(one) == len(two) == 4
    assert max(abs(a - b) for a, b in zip(one, two)) < 1e-5
    assert one[-1] < one[0]


def test_thirty_steps_lower_the_loss(files, tmp_path):
    run(files, tmp_path / "s.pt", "--steps", "30", "--lr", "1e-2")
    losses = [r["loss"] for r in map(
        json.loads, (tmp_path / "s.log.jsonl").read_text().splitlines()) if "loss" in r]
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5


def test_tiny_init_trains_a_tokenizer_and_evaluates_by_generation(files, tmp_path, capsys):
    run(files, tmp_path / "t.pt", "--init", "tiny", "--steps", "2", "--val", files / "val.jsonl",
        "--eval-items", "4", "--max-new-tokens", "8")
    final = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert final["step"] == 2 and final["val_loss"] > 0 and 0.0 <= final["accuracy"] <= 1.0
    ck = torch.load(tmp_path / "t.pt", weights_only=True)
    assert ck["run_config"]["init"] == "tiny" and ck["tokenizer"]


def test_tiny4x_init_is_the_tiny_architecture_four_times_larger(files):
    records = [trace(i) for i in range(40)]
    sizes = {}
    for init in ("tiny", "tiny4x"):
        model, tok, _ = train_sft.build_init(train_sft.parse_args(
            ["--data", "x", "--out", "y", "--init", init]), records)
        c = model.config
        sizes[init] = sum(p.numel() for p in model.parameters())
        assert (c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads,
                c.max_position_embeddings) == (6, 8, 2, 1024)
        assert c.hidden_size == {"tiny": 256, "tiny4x": 512}[init]
    assert 3.8 < sizes["tiny4x"] / sizes["tiny"] < 4.2


@pytest.mark.parametrize("case,message", [
    ("empty", "no records"), ("bad_json", "line 2"), ("vocab", "do not belong together"),
    ("no_folder", "does not exist"), ("exists", "--force"),
])
def test_bad_input_stops_with_a_clear_message(files, tmp_path, case, message, capsys):
    data, init, out = files / "train.jsonl", files / "init", tmp_path / "o.pt"
    if case == "empty":
        data = tmp_path / "empty.jsonl"
        data.write_text("")
    elif case == "bad_json":
        data = tmp_path / "bad.jsonl"
        data.write_text(json.dumps(trace(0)) + "\n{not json\n")
    elif case == "vocab":
        import shutil
        init = tmp_path / "init"
        shutil.copytree(files / "init", init)
        (init / "tokenizer.json").write_text(train_bpe([json.dumps(trace(i)) for i in range(40)]
                                                       * 5,
                                                       vocab_size=1000).to_json())
    elif case == "no_folder":
        out = tmp_path / "missing" / "o.pt"
    elif case == "exists":
        out.write_text("precious")
    with pytest.raises(SystemExit) as e:
        train_sft.run_cli(["--data", str(data), "--init", str(init), "--out", str(out), "--steps",
                           "1"])
    assert e.value.code == 2
    assert message in capsys.readouterr().err
    if case == "exists":
        assert out.read_text() == "precious"


def named_checkpoint(err: str, out: Path):
    """The file a NaN stop names, checked: it exists and its model maps a prompt to finite logits.
    None when the message says that there is none, in which case --out must not exist either."""
    if "no checkpoint with finite weights was written" in err:
        assert not out.exists()
        return None
    assert "the last checkpoint with finite weights is " in err, err
    path = Path(err.split("the last checkpoint with finite weights is ")[1].split(" (step")[0])
    model = load_model(path)[0]
    with torch.no_grad():
        assert torch.isfinite(model(torch.arange(20)[None])).all()
    return path


@pytest.mark.parametrize("save_every", ["1", "100"])
def test_a_non_finite_loss_never_reaches_a_save_and_the_message_names_a_finite_file_or_none(
        files, tmp_path,
                                                                                           capsys,
        save_every):
    out = tmp_path / "n.pt"
    with pytest.raises(SystemExit) as e:  # lr 1e30: step 1 is finite, then the model overflows
        train_sft.run_cli(["--data", str(files / "train.jsonl"), "--init", str(files / "init"),
                           "--out", str(out), "--steps", "50", "--lr", "1e30", "--warmup", "1",
                           "--clip", "0", "--save-every", save_every, "--eval-every", "0"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "stopping without saving" in err
    named_checkpoint(err, out)


def test_a_nan_stop_names_the_last_checkpoint_written(files, tmp_path, capsys, monkeypatch):
    calls, real = [0], train_sft.sft_nll

    def nan_from_step_4(*a):  # batch 8, micro 8: one call per step
        calls[0] += 1
        return real(*a) * (float("nan") if calls[0] >= 4 else 1.0)
    monkeypatch.setattr(train_sft, "sft_nll", nan_from_step_4)
    out = tmp_path / "n.pt"
    with pytest.raises(SystemExit):
        train_sft.run_cli(["--data", str(files / "train.jsonl"), "--init", str(files / "init"),
                           "--out", str(out), "--batch", "8", "--micro", "8", "--steps", "6",
                           "--save-every", "2", "--eval-every", "0"])
    err = capsys.readouterr().err
    assert "loss is nan at step 4" in err and named_checkpoint(err, out) == out
    assert torch.load(out, weights_only=True)["train_state"]["step"] == 2


def test_resume_never_overwrites_another_existing_file(files, tmp_path, capsys):
    run(files, tmp_path / "part.pt", "--stop-after", "2", "--steps", "4")
    precious = tmp_path / "traces.jsonl"
    precious.write_text("precious\n")
    with pytest.raises(SystemExit) as e:
        train_sft.run_cli(["--data", str(files / "train.jsonl"), "--init", str(files / "init"),
                           "--out", str(precious), "--resume", str(tmp_path / "part.pt"), "--steps",
                           "4"])
    assert e.value.code == 2 and "--force" in capsys.readouterr().err
    assert precious.read_text() == "precious\n"


def test_a_missing_checkpoint_does_not_truncate_its_log(files, tmp_path, capsys):
    log = tmp_path / "o.log.jsonl"
    log.write_text('{"step": 1, "loss": 2.0}\n')
    with pytest.raises(SystemExit) as e:
        train_sft.run_cli(["--data", str(files / "train.jsonl"), "--init", str(files / "init"),
                           "--out", str(tmp_path / "o.pt"), "--steps", "1"])
    assert e.value.code == 2 and "o.log.jsonl exists" in capsys.readouterr().err
    assert log.read_text() == '{"step": 1, "loss": 2.0}\n'


def test_resume_refuses_changed_settings_and_warns_about_more_steps(files, tmp_path, capsys):
    part = tmp_path / "part.pt"
    run(files, part, "--stop-after", "2")
    capsys.readouterr()
    for flag, value in (("--lr", "1e-3"), ("--batch", "4"), ("--seed", "2")):
        with pytest.raises(ValueError) as e:
            run(files, part, "--resume", part, flag, value)
        assert flag in str(e.value)
    (tmp_path / "other.jsonl").write_text(
        (files / "train.jsonl").read_text().replace("What is 10", "What is 11"))
    with pytest.raises(ValueError, match="--data-sha256"):
        run(files, part, "--resume", part, "--data", tmp_path / "other.jsonl")
    run(files, part, "--resume", part, "--steps", "8")
    assert "warning: resuming with a changed setting: --steps 6 -> 8" in capsys.readouterr().out
    log = [json.loads(l) for l in part.with_suffix(".log.jsonl").read_text().splitlines()]
    # the log is appended to: the first run's lines are still there
    assert log[0]["config"]["steps"] == 6
    resumed = [r for r in log if "resumed_at" in r]
    assert len(resumed) == 1 and resumed[0]["changed"] == ["--steps 6 -> 8"]
    assert [r["step"] for r in log if "loss" in r] == list(range(1, 9))


def test_resuming_an_rl_run_says_what_the_file_is(files, tmp_path):
    rl = tmp_path / "rl.pt"
    run(files, rl)
    ck = torch.load(rl, weights_only=True)
    ck["run_config"] = {**ck["run_config"], "run": "train_grpo"}
    torch.save(ck, rl)
    with pytest.raises(ValueError, match="this is a train_grpo.py run"):
        run(files, tmp_path / "sft.pt", "--resume", rl)


def test_a_trace_too_long_is_named_by_file_and_line_or_skipped_counted_and_logged(
        files, tmp_path, capsys):
    long = {**trace(3), "completion": "1 + 1 = 2. " * 400 + "\n</think>\n[[A]]"}
    data = tmp_path / "d.jsonl"
    data.write_text("\n\n" + "".join(json.dumps(r) + "\n" for r in [trace(0), long, trace(1)]))
    with pytest.raises(ValueError, match=f"{data}, line 4 \\(id t3\\): .* tokens, over the 512"):
        run(files, tmp_path / "a.pt", "--data", data)
    run(files, tmp_path / "b.pt", "--data", data, "--skip-bad", "--steps", "1")
    assert "skipped 1 bad line (first: " in capsys.readouterr().out
    config = json.loads((tmp_path / "b.log.jsonl").read_text().splitlines()[0])["config"]
    assert config["skipped_lines"] == 1 and config["train_items"] == 2


def test_ctrl_c_under_the_stage_script_stops_it_before_the_run_counts_as_finished(files, tmp_path):
    """scripts/stages.sh's `train` marks a run finished (<out>.done) when the trainer exits 0; a
    trainer stopped by Ctrl-C saves and exits 130, so the script stops and a rerun resumes."""
    import signal
    import time
    out = tmp_path / "sft.pt"
    args = " ".join(["--data", str(files / "train.jsonl"), "--init", str(files / "init"),
                     "--batch", "8", "--micro", "8", "--steps", "100000", "--warmup", "2",
                     "--eval-every", "0", "--save-every", "1000"])
    script = (f"set -euo pipefail; OUT={tmp_path}; source {ROOT}/scripts/stages.sh; "
              f"train {out} {ROOT}/train_sft.py {args}; echo went-on")
    p = subprocess.Popen(["bash", "-c", script], cwd=ROOT, start_new_session=True,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    log = tmp_path / "sft.log.jsonl"
    t0 = time.time()
    while not (log.exists() and '"loss"' in log.read_text()):  # the loop runs: Ctrl-C now
        assert p.poll() is None and time.time() - t0 < 120, p.stdout.read()
        time.sleep(0.2)
    os.killpg(p.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole group
    said = p.communicate(timeout=120)[0]
    assert p.returncode != 0 and "went-on" not in said, said
    assert "interrupted: saved step" in said
    assert out.exists() and not (tmp_path / "sft.pt.done").exists()
