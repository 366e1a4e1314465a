"""judge.py --show-tokens and j1_min/show_tokens.py: every token visible, forced ones and removed
markers marked, and the verdict's log-probability under each option equal to what the sampler itself
reports."""
from __future__ import annotations

import math

import pytest

import judge
from conftest import judge_tokenizer, planted_judge, tiny_teacher
from j1_min.data import write_jsonl
from j1_min.judge_format import encode_prompt, forcing_kwargs
from j1_min.sampling import Generation, generate
from j1_min.show_tokens import render, verdict_logprobs
from j1_min.tasks import make_pairs


class Letters:
    """A stand-in tokenizer whose token i decodes to NAMES[i]."""
    NAMES = ["So", " B", ".\n", "Wait", ",", "</think>", "\n[[", "B", "]]"]

    def decode(self, ids):
        return "".join(self.NAMES[i] for i in ids)


def test_render_marks_forced_runs_and_removed_markers():
    # "So B.\n" sampled, </think> removed there and "Wait" forced, "," sampled, then a forced end
    # and answer prefix
    gen = Generation(tokens=[0, 1, 2, 3, 4, 5, 6, 7, 8], forced=[0, 0, 0, 1, 0, 1, 1, 0, 0],
                     suppressed_at=[3])
    assert render(Letters(), gen) == "So| B|.\n[-</think>][+Wait]|,|[+</think>|\n[[]|B|]]"
    colored = render(Letters(), gen, color=True)
    assert "\033[" in colored and "[+" not in colored and "Wait" in colored
    cut = Generation(tokens=[0, 1], forced=[0, 0], suppressed_at=[2])  # the forced Wait did not fit
    assert render(Letters(), cut).endswith("[-</think>]")
    # '>\n' was one token
    fused = Generation(tokens=[0, 3], forced=[0, 1], suppressed_at=[1], removed=["</think>\n"])
    assert render(Letters(), fused) == "So[-</think>\n][+Wait]"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("show")
    pairs = make_pairs(6, "test", seed=0)
    write_jsonl(d / "test.jsonl", pairs)
    tok = judge_tokenizer(pairs)
    tiny_teacher(d / "coin", tok, strength=3.0, verdicts="AB")
    return d, tok, pairs


def test_verdict_logprobs_equal_the_samplers(setup):
    _, tok, pairs = setup
    model = planted_judge(tok, "AB", strength=3.0)
    from j1_min.checkpoint import load_model
    import tempfile
    with tempfile.TemporaryDirectory() as d:  # our model on the same weights
        model.save_pretrained(d)
        ours = load_model(d)[0]
    prompts = [encode_prompt(tok, r["question"], r["response_a"], r["response_b"]) for r in pairs
               for _ in range(4)]
    # 4 samples a pair
    gens = generate(ours, prompts, 30, temperature=1.0, seed=0, **forcing_kwargs(tok, 1, 6))
    checked = 0
    for prompt, g in zip(prompts, gens):
        lp = verdict_logprobs(ours, tok, prompt, g)
        if lp is None or g.forced[lp["at"]]:
            continue
        letter = tok.decode([g.tokens[lp["at"]]])
        # temperature 1: the same number
        assert lp[letter] == pytest.approx(g.logprobs[lp["at"]], abs=1e-4)
        assert math.exp(lp["A"]) + math.exp(lp["B"]) <= 1 + 1e-6
        checked += 1
    assert checked >= 5


def test_show_tokens_cli(setup, capsys):
    d, _, _ = setup
    judge.main(["--ckpt", str(d / "coin"), "--data", str(d / "test.jsonl"), "--budget", "2",
                "--show-tokens", "1", "--max-think-tokens", "12", "--max-new-tokens", "40",
                "--color", "never"])
    out = capsys.readouterr().out
    head = out.splitlines()[0]
    assert head.startswith("pair 1 (arith-test-0-1), budget 2, greedy: verdict")
    waits = int(head.split(" forced")[0].rsplit(" ", 1)[1])
    completion = out.split("--- completion")[1].split("\n", 2)[2]  # after the legend
    assert completion.count("[-</think>]") == waits >= 1  # the planted judge tries to stop at once
    assert "[+" in completion and "--- verdict token" in out and "log p(A) = " in out


def test_show_tokens_refuses_what_it_cannot_show(setup):
    d, _, _ = setup
    base = ["--ckpt", str(d / "coin"), "--data", str(d / "test.jsonl")]
    with pytest.raises(ValueError, match="one trace"):
        judge.main(base + ["--show-tokens", "--budgets", "0,1"])
    with pytest.raises(ValueError, match="there are 6 pairs"):
        judge.main(base + ["--show-tokens", "6"])
