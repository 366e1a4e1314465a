"""A real pretrained chat model through j1_min: SmolLM2-135M-Instruct (Llama architecture, a 49,152-
token byte-level BPE, a ChatML chat template), the folder scripts/get_smollm2.py makes.

The folder is named by the environment variable J1_REAL_MODEL (.ci/run sets it after making the
folder). Unset: these tests are skipped. Set but the folder missing, partial or damaged: they fail,
with the command that makes it. Each test compares j1_min with transformers on the same folder, or
with a reference loop written out with full forwards, so a wrong implementation fails it.
"""
from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest
import torch

from test_forcing import s1_loop
from j1_min.checkpoint import load_judge, load_model, save_hf
from j1_min.judge_format import forcing_kwargs
from j1_min.sampling import generate
from j1_min import templates

ROOT = Path(__file__).resolve().parents[1]
ENV = "J1_REAL_MODEL"
QUESTIONS = ["What is the capital of France?", "Write a haiku about rain.",
             "Explain recursion to a child in two sentences.", "What is 17 * 23?",
             "Name three prime numbers greater than 50.", "def add(a, b): what does this do?",
             "Translate 'good morning' into Spanish.", "Why is the sky blue? Be brief."]
# few-shot thinking, so that the model closes its thinking with `</think>` (several ordinary
# tokens in its vocabulary: '</' 'think' '>') by itself, and budget forcing has something to act on
SHOTS = ("Q: 2+2?\n<think>\nTwo plus two is four.</think>\nAnswer: 4\n\n"
         "Q: 3*3?\n<think>\nThree times three is nine.</think>\nAnswer: 9\n\n")


def _get_script():
    spec = importlib.util.spec_from_file_location("get_smollm2", ROOT / "scripts/get_smollm2.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def folder():
    """The model folder, checked whole (files present, checksums right)."""
    path = os.environ.get(ENV)
    if not path:
        pytest.skip(f"{ENV} is unset (make the folder with scripts/get_smollm2.py and set it)")
    try:
        return _get_script().check_folder(path)
    except ValueError as e:
        pytest.fail(f"{ENV}={path}: {e}", pytrace=False)


@pytest.fixture(scope="module")
def real(folder):
    """(our model, our tokenizer, transformers' model, transformers' tokenizer), float32."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    torch.manual_seed(0)
    ours, tok, _ = load_judge(folder, "mt_bench_pair_think")
    theirs = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    return ours, tok, theirs, AutoTokenizer.from_pretrained(folder)


def chat(hf_tok, question: str) -> str:
    return hf_tok.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                      add_generation_prompt=True)


def test_a_missing_partial_or_damaged_folder_is_one_line_naming_the_script(tmp_path):
    check = _get_script().check_folder
    with pytest.raises(ValueError, match=r"no such model folder; make it with: python "
                                         r"scripts/get_smollm2.py --out"):
        check(tmp_path / "absent")
    (tmp_path / "m").mkdir()
    files = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
             "generation_config.json")
    for f in files:
        (tmp_path / "m" / f).write_text(f)
    with pytest.raises(ValueError, match="partial model folder .SHA256SUMS is missing.*--force"):
        check(tmp_path / "m")
    sums = _get_script().sha256
    (tmp_path / "m" / "SHA256SUMS").write_text("".join(f"{sums(tmp_path / 'm' / f)}  {f}\n"
                                                       for f in files))
    assert check(tmp_path / "m") == tmp_path / "m"
    (tmp_path / "m" / "model.safetensors").write_text("damaged")
    with pytest.raises(ValueError, match="model.safetensors fails the checksum.*get_smollm2"):
        check(tmp_path / "m")
    (tmp_path / "m" / "tokenizer.json").unlink()
    with pytest.raises(ValueError, match=r"partial model folder \(tokenizer.json missing\)"):
        check(tmp_path / "m")


def test_logits_equal_transformers_on_real_prompts_of_several_lengths_in_one_padded_batch(real):
    ours, tok, theirs, hf_tok = real
    seqs = [tok.encode(chat(hf_tok, q), allow_special=True) for q in ("Hi", *QUESTIONS[1:3])]
    seqs.append(seqs[0] + tok.encode("The capital of France is Paris. " * 12))
    assert len({len(s) for s in seqs}) == len(seqs)
    T = max(map(len, seqs))
    ids = torch.full((len(seqs), T), hf_tok.pad_token_id)  # right padding
    mask = torch.zeros(len(seqs), T, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)], mask[i, :len(s)] = torch.tensor(s), 1
    with torch.no_grad():
        a = ours(ids)  # (B, T, V)
        b = theirs(input_ids=ids, attention_mask=mask).logits
    for i, s in enumerate(seqs):
        n = len(s)
        torch.testing.assert_close(a[i, :n], b[i, :n], atol=1e-4, rtol=0)
    assert a.abs().max() > 1  # real logits, not a degenerate model


@pytest.mark.parametrize("new", [12, pytest.param(64, marks=pytest.mark.slow)])
def test_greedy_generation_equals_transformers_generate_token_for_token(real, new):
    """8 prompts of different lengths in one batch (transformers: left padding), `new` tokens each
    (64 in the slow run), stopping at the end of turn."""
    ours, tok, theirs, hf_tok = real
    texts = [chat(hf_tok, q) for q in QUESTIONS]
    prompts = [tok.encode(t, allow_special=True) for t in texts]
    eos = tok.eos_id
    with torch.no_grad():
        gens = generate(ours, prompts, new, stop_ids=[eos])
        hf_tok.padding_side = "left"
        enc = hf_tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        out = theirs.generate(**enc, max_new_tokens=new, do_sample=False, eos_token_id=eos,
                              pad_token_id=hf_tok.pad_token_id)
    assert enc["input_ids"][0, -len(prompts[0]):].tolist() == prompts[0]
    for g, row in zip(gens, out[:, enc["input_ids"].shape[1]:].tolist()):
        want = row[:row.index(eos) + 1] if eos in row else row
        assert g.tokens == want
    assert "Paris" in tok.decode(gens[0].tokens)


CORPUS = ["def f(x):\n    return {'a': [1, 2, 3]}[x]  # comment\n\tprint(f\"{x!r}\")\n",
          "3.14159 * 2 = 6.28318; 1,000,000 and 0x1F and 2026-12-04",
          "naïve café — Ünïcödé “quotes” 日本語のテキスト 🙂👍🏽 Ελληνικά",
          "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\nok</think>\n[[A]]",
          "  leading spaces and trailing   \n\n\n  ", "<|endoftext|><repo_name>x<file_sep>"]


def test_the_tokenizer_encodes_and_decodes_as_transformers_does(real):
    _, tok, _, hf_tok = real
    for s in CORPUS:
        ids = tok.encode(s, allow_special=True)
        assert ids == hf_tok.encode(s, add_special_tokens=False), s
        assert tok.decode(ids) == hf_tok.decode(ids, skip_special_tokens=False) == s
        plain = tok.encode(s)  # user text: special tokens disabled
        assert not set(plain) & set(tok.added.values()) and tok.decode(plain) == s
    assert tok.eos_id == hf_tok.convert_tokens_to_ids("<|im_end|>")
    assert tok.marker_ids("</think>") == hf_tok.encode("</think>", add_special_tokens=False)
    assert len(tok.marker_ids("</think>")) > 1  # several ordinary tokens


def test_a_judge_prompt_under_the_models_chat_template_is_what_apply_chat_template_renders(real):
    _, tok, _, hf_tok = real
    template = templates.load("mt_bench_pair_think")
    item = json.loads((ROOT / "j1_min/embedded/test.jsonl").read_text().splitlines()[0])
    args = item["question"], item["response_a"], item["response_b"]
    want = hf_tok.apply_chat_template(template.messages(*args), tokenize=False,
                                      add_generation_prompt=True) + template.assistant_prefix
    assert templates.prompt_text(template, *args, tok.chat_template) == want
    assert templates.prompt_ids(template, tok, *args) == hf_tok.encode(want,
                                                                       add_special_tokens=False)
    # a judged text holding the chat markers stays ordinary text
    ids = templates.prompt_ids(template, tok, item["question"], "<|im_end|>", item["response_b"])
    clean = templates.prompt_ids(template, tok, *args)
    specials = set(tok.added.values())
    assert sum(i in specials for i in ids) == sum(i in specials for i in clean)


class Replay(torch.nn.Module):
    """The model with `target`'s next token lifted to the top of each position's logits (finite:
    a token the loop bans stays banned), so s1_loop's greedy choices replay a sampled trace."""

    def __init__(self, model, prompt, target):
        super().__init__()
        self.model, self.n, self.target = model, len(prompt), target

    def forward(self, ids):
        logits = self.model(ids)  # (1, T, V)
        at = ids.shape[1] - self.n
        if at < len(self.target):
            logits[0, -1, self.target[at]] += 1e4
        return logits


@pytest.mark.parametrize("temperature,new", [(0.0, 16), (1.0, 12),
                                             pytest.param(0.0, 40, marks=pytest.mark.slow),
                                             pytest.param(1.0, 40, marks=pytest.mark.slow)])
def test_budget_forcing_on_the_real_tokenizer_writes_what_s1s_own_loop_writes(real, temperature,
                                                                              new):
    """Budgets 1-3 from one prompt, greedy: the sampler's traces are s1_loop's (tests/
    test_forcing.py: full forwards, no cache, the marker found in the text). Sampled: each
    sampler trace replayed through s1_loop (which cuts, forces and bans as s1 does) is the same
    trace."""
    ours, tok, _, _ = real
    prompt = tok.encode(SHOTS + "Q: 5+6?\n<think>\n", allow_special=True)
    kw = {**forcing_kwargs(tok, 0), "budget": [1, 2, 3]}
    with torch.no_grad():
        gens = generate(ours, [prompt] * 3, new, temperature=temperature, seed=3, **kw)
        for budget, g in zip((1, 2, 3), gens):
            model = ours if temperature == 0 else Replay(ours, prompt, g.tokens)
            ref = s1_loop(model, tok, prompt, budget, new)
            assert tok.decode(g.tokens) == tok.decode(ref), budget
            assert g.tokens == ref
    if temperature == 0:  # the model closed its thinking by itself, and the forcing acted
        assert all(g.num_waits >= 1 for g in gens)


def _pairs(n: int) -> list[dict]:
    rows = []
    for i in range(n):
        a, b = 10 + i, 3 + i
        right, wrong = a + b, a + b + 10
        label = "AB"[i % 2]
        ra, rb = (right, wrong) if label == "A" else (wrong, right)
        rows.append({"id": f"t{i}", "question": f"What is {a} + {b}?", "response_a":
                     f"The answer is {ra}.", "response_b": f"The answer is {rb}.", "label": label,
                     "verdict": label, "has_reflection": False, "source": "test",
                     "completion": f"{a} + {b} = {right}.\nA says {ra}. B says {rb}.\nSo {label} "
                                   f"is right.\n</think>\n[[{label}]]"})
    return rows


def test_sft_on_the_folder_lowers_the_loss_and_grpo_runs_on_its_output(folder, real, tmp_path):
    """train_sft.py --init <folder>: a few steps on the same traces, the loss falls; its .pt, and
    an HF folder written from it, give the same logits, and transformers loads that folder to the
    same logits; train_grpo.py --ckpt <that .pt> runs two steps."""
    import train_grpo
    import train_sft
    from transformers import AutoModelForCausalLM
    data = tmp_path / "traces.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in _pairs(4)))
    # j1_min's template with a short prompt: the steps cost what the traces cost
    short = tmp_path / "short.json"
    short.write_text(json.dumps({**templates.load("j1_min").to_dict(), "name": "short",
                                 "system": "Judge.", "user": "{question}\nA: {response_a}\nB: "
                                                             "{response_b}"}))
    sft = tmp_path / "sft.pt"
    train_sft.run_cli(["--data", str(data), "--init", str(folder), "--out", str(sft), "--steps",
                       "4", "--batch", "4", "--micro", "4", "--lr", "1e-4", "--warmup", "0",
                       "--eval-every", "0", "--seed", "0", "--template", str(short)])
    log = [json.loads(x) for x in sft.with_suffix(".log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log if "loss" in r]
    assert len(losses) == 4 and losses[-1] < 0.8 * losses[0], losses

    model, tok_text, _ = load_model(sft)
    hf = tmp_path / "sft_hf"
    save_hf(model, hf, tok_text)
    again = load_model(hf)[0]
    theirs = AutoModelForCausalLM.from_pretrained(hf, dtype=torch.float32).eval()
    ids = torch.tensor([real[1].encode("What is 12 + 30? The answer is 42.")])
    with torch.no_grad():
        a, b, c = model(ids), again(ids), theirs(ids).logits
    assert torch.equal(a, b)
    torch.testing.assert_close(a, c, atol=1e-4, rtol=0)
    assert not torch.equal(a, real[0](ids))  # the SFT steps changed the weights

    rl = tmp_path / "rl.pt"
    train_grpo.run_cli(["--ckpt", str(sft), "--data", str(data), "--out", str(rl), "--steps", "2",
                        "--prompts", "2", "--group", "2", "--max-new-tokens", "12",
                        "--eval-every", "0", "--micro", "4", "--seed", "0"])
    steps = [json.loads(x) for x in rl.with_suffix(".log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in steps if "step" in r][-1] == 2 and load_model(rl)[0] is not None
