"""Real chat formats (j1_min/templates.py, j1_min/judge_format.py): judges whose folders carry the
chat templates, special tokens and end-of-turn settings of DeepSeek-R1-Distill-Qwen,
Llama-3-Instruct, Qwen3 and Qwen3-Thinking-2507 (tests/fixtures/chat_templates/, each with its
source) on a tiny vocabulary trained here. The prompt is what transformers' apply_chat_template
renders and encodes with the folder's full tokenizer, BOS included once; thinking opens once; the
sampler stops on the model's own end of turn; a judgment runs to a verdict; MT-Bench templates read
the verdict by FastChat's rule and rewards stay strict."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import hf_model
from j1_min import templates
from j1_min.checkpoint import load_judge
from j1_min.evaluate import judge_pairs
from j1_min.judge_format import (build_prompt, encode_prompt, judge_verdict, mt_bench_verdict,
                                 parse_verdict, reward, select_traces)
from j1_min.tokenizer import Tokenizer, train_bpe

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "chat_templates"
MODELS = sorted(p.stem for p in FIXTURES.glob("*.json"))
MT, MT_THINK = templates.load("mt_bench_pair"), templates.load("mt_bench_pair_think")
PAIR = ("What is 2 + 2?", "The answer is 4.", "The answer is 5.")
# the end of a judge's turn in each model's chat format (its eos_token)
TURN_END = {"deepseek_r1_distill_qwen": "<｜end▁of▁sentence｜>", "llama3_instruct": "<|eot_id|>",
            "qwen3": "<|im_end|>", "qwen3_thinking_2507": "<|im_end|>"}


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def model_folder(folder: Path, name: str, model=None) -> Path:
    """A judge folder in `name`'s chat format: a tiny BPE whose added tokens are the model's
    (Llama 3's tokenizer.json adds BOS to every encoding, as the real one does), the model's
    tokenizer_config.json, and its generation_config.json / config.json token ids, translated from
    the real vocabulary into the tiny one by token text. `model`: a transformers model to save there
    (default a random tiny Qwen2)."""
    fx = fixture(name)
    texts = [templates.prompt_text(MT, *PAIR, "{% for m in messages %}{{ m.content }}{% endfor %}"),
             "Wait\n</think>\n\nA is right. [[A]] [[B]] [[C]]\n\n"] * 4
    tok = train_bpe(texts, 400, special_tokens=fx["added_tokens"])
    if fx["adds_bos"]:
        from tokenizers import processors
        bos = fx["tokenizer_config"]["bos_token"]
        tok.tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", special_tokens=[(bos, tok.token_id(bos))])
    tiny = {real: tok.token_id(text) for real, text in fx["token_ids"].items()}

    def ids(v):
        return [tiny[str(i)] for i in v] if isinstance(v, list) else tiny[str(v)]
    model = model if model is not None else hf_model("qwen2", vocab_size=tok.vocab_size)
    model.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    config.update({k: ids(v) for k, v in fx["config"].items()})
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "generation_config.json").write_text(json.dumps(
        {k: ids(v) for k, v in fx["generation_config"].items()}))
    (folder / "tokenizer.json").write_text(tok.to_json())
    # transformers reads tokenizer.json as it is (tokenizer_class names the real vocabulary's class)
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {**fx["tokenizer_config"], "tokenizer_class": "PreTrainedTokenizerFast"}))
    return folder


def transformers_prompt(folder: Path, template) -> tuple[str, list[int]]:
    """What transformers renders and encodes with the folder's full tokenizer: apply_chat_template
    with the template's chat_kwargs, then the template's opening of the judge's turn unless the
    generation prompt already ends with it."""
    import transformers
    hf = transformers.AutoTokenizer.from_pretrained(folder)
    kw = dict(template.chat_kwargs)
    text = hf.apply_chat_template(template.messages(*PAIR), tokenize=False,
                                  add_generation_prompt=True, **kw)
    if not text.endswith(template.assistant_prefix):
        text += template.assistant_prefix
    return text, hf.encode(text, add_special_tokens=False)


# ------------------------------------------------------------------------------------------------
# the prompt

@pytest.mark.parametrize("template", [MT, MT_THINK], ids=lambda t: t.name)
@pytest.mark.parametrize("name", MODELS)
def test_the_prompt_is_what_transformers_renders_with_the_models_own_tokenizer(
        tmp_path, name, template):
    folder = model_folder(tmp_path / name, name)
    _, tok, _ = load_judge(folder, template.name)
    text, ids = transformers_prompt(folder, template)
    assert build_prompt(*PAIR, template, tok.chat_template, tok.chat_tokens) == text
    assert encode_prompt(tok, *PAIR, template) == ids


@pytest.mark.parametrize("name", ["deepseek_r1_distill_qwen", "llama3_instruct"])
def test_bos_is_in_the_prompt_ids_exactly_once_at_the_start(tmp_path, name):
    folder = model_folder(tmp_path / name, name)
    _, tok, template = load_judge(folder, "mt_bench_pair_think")
    bos = tok.token_id(fixture(name)["tokenizer_config"]["bos_token"]["content"]
                       if name.startswith("deepseek") else "<|begin_of_text|>")
    ids = encode_prompt(tok, *PAIR, template)
    assert ids[0] == bos and ids.count(bos) == 1


@pytest.mark.parametrize("name", ["deepseek_r1_distill_qwen", "qwen3_thinking_2507"])
def test_thinking_opens_once_where_the_generation_prompt_already_opens_it(tmp_path, name):
    _, tok, template = load_judge(model_folder(tmp_path / name, name), "mt_bench_pair_think")
    text = build_prompt(*PAIR, template, tok.chat_template, tok.chat_tokens)
    assert text.endswith("<think>\n") and text.count("<think>") == 1


def test_qwen3_under_mt_bench_pair_has_its_thinking_switched_off_by_its_template(tmp_path):
    _, tok, template = load_judge(model_folder(tmp_path / "qwen3", "qwen3"), "mt_bench_pair")
    assert build_prompt(*PAIR, template, tok.chat_template, tok.chat_tokens).endswith(
        "<|im_start|>assistant\n<think>\n\n</think>\n\n")
    # the thinking variant leaves it on, and opens it
    _, tok, template = load_judge(tmp_path / "qwen3", "mt_bench_pair_think")
    assert build_prompt(*PAIR, template, tok.chat_template, tok.chat_tokens).endswith(
        "<|im_start|>assistant\n<think>\n")


# ------------------------------------------------------------------------------------------------
# the end of turn

@pytest.mark.parametrize("name", MODELS)
def test_the_stop_ids_are_the_models_eos_token_ids_and_its_eos_token(tmp_path, name):
    folder = model_folder(tmp_path / name, name)
    _, tok, _ = load_judge(folder, "mt_bench_pair")
    gen = json.loads((folder / "generation_config.json").read_text())["eos_token_id"]
    assert set(tok.stop_ids) == set(gen if isinstance(gen, list) else [gen])
    assert tok.eos_id == tok.token_id(TURN_END[name])  # what closes an SFT example


def test_a_model_without_any_end_of_turn_is_refused_in_one_line_naming_it(tmp_path):
    folder = model_folder(tmp_path / "r1", "deepseek_r1_distill_qwen")
    (folder / "generation_config.json").unlink()
    config = json.loads((folder / "config.json").read_text())
    config.pop("eos_token_id")
    (folder / "config.json").write_text(json.dumps(config))
    tc = json.loads((folder / "tokenizer_config.json").read_text())
    tc.pop("eos_token")
    (folder / "tokenizer_config.json").write_text(json.dumps(tc))
    with pytest.raises(ValueError, match=r"r1: no end-of-turn token: no eos_token_id in "
                                         r"generation_config.json or config.json") as e:
        load_judge(folder, "mt_bench_pair")
    assert "\n" not in str(e.value)


def planted(vocab: int, chain: list[int]):
    """A random tiny transformers Qwen2 that, as a bigram, follows chain[i] by chain[i + 1] (each a
    token id; blocks add nothing, so the next token depends on the current one only)."""
    import transformers
    cfg = transformers.Qwen2Config(vocab_size=vocab, hidden_size=64, intermediate_size=128,
                                   num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=2, max_position_embeddings=1024,
                                   tie_word_embeddings=False)
    torch.manual_seed(0)
    model = transformers.Qwen2ForCausalLM(cfg).eval()
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.model.embed_tokens.weight[:, :len(chain)] = 0.0
        for dim, (src, dst) in enumerate(zip(chain, chain[1:])):
            model.model.embed_tokens.weight[src] = 0.0
            model.model.embed_tokens.weight[src, dim] = 1.0
            model.lm_head.weight[:, dim] = 0.0
            model.lm_head.weight[dst, dim] = 8.0
    return model


@pytest.mark.parametrize("template", [MT, MT_THINK], ids=lambda t: t.name)
@pytest.mark.parametrize("name", MODELS)
def test_a_judgment_in_each_format_runs_to_its_verdict_and_stops_on_the_models_end_of_turn(
        tmp_path, name, template):
    folder = model_folder(tmp_path / name, name)  # the tokenizer, to plant its ids
    _, tok, _ = load_judge(folder, template.name)
    last = encode_prompt(tok, *PAIR, template)[-1]
    say = [tok.encode(s)[0] for s in ("[[", "A", "]]")] + [tok.token_id(TURN_END[name])]
    # `</think>` is several ordinary tokens in Llama 3's vocabulary
    chain = [last] + (tok.marker_ids("</think>") if template.think_end else []) + say
    assert len(set(chain)) == len(chain)
    model_folder(folder, name, planted(tok.vocab_size, chain))
    model, tok, template = load_judge(folder, template.name)
    item = {"id": "p", "question": PAIR[0], "response_a": PAIR[1], "response_b": PAIR[2],
            "label": "A"}
    row, = judge_pairs(model, tok, [item], max_new_tokens=12, template=template)
    assert row["verdict"] == "A" and row["tokens"] == len(chain) - 1  # stopped on its end of turn
    assert TURN_END[name] not in row["completion"]


# ------------------------------------------------------------------------------------------------
# verdict rules

@pytest.mark.parametrize("completion, verdict", [
    # FastChat's order: [[A]] anywhere first, however the explanation reads
    ('Output "[[A]]" if A is better, "[[B]]" if B is. My verdict: [[B]]', "A"),
    ("B is right.\n[[B]]\n\nFinal verdict: [[B]]", "B"),  # repeated
    ("As [[Wikipedia]] says, 4 is right. [[A]]", "A"),  # a bracketed word
    ("Equal. [[C]]", "tie"),
    ("<think>\nmaybe [[A]]?\n</think>\n\nB is right. [[B]]", "B"),  # Qwen3 thinking anyway
    ("No verdict here.", None),
])
def test_mt_bench_templates_judge_by_fastchats_pair_v2_rule_and_rewards_stay_strict(
        completion, verdict):
    assert MT.verdict_rule == MT_THINK.verdict_rule == "mt_bench"
    assert judge_verdict(completion, MT) == mt_bench_verdict(completion, MT) == verdict
    if "<think>" not in completion:  # the thinking variant reads after its end of thinking
        assert judge_verdict("x\n</think>\n" + completion, MT_THINK) == verdict
    if completion.count("[[") > 1:  # strict: one verdict, nothing else in double brackets
        assert parse_verdict(completion, MT) is None
        assert reward(completion, verdict or "A", template=MT) == 0.0
        item = {"id": "q", "question": "q", "response_a": "a", "response_b": "b", "label": "A"}
        assert select_traces(item, [completion], 4, "test", MT) == ([], 0)


def test_the_thinking_variant_reads_no_verdict_before_its_end_of_thinking():
    assert judge_verdict("[[A]] is tempting", MT_THINK) is None


def test_j1_min_judges_by_the_strict_rule():
    j1 = templates.load("j1_min")
    assert j1.verdict_rule == "strict" and judge_verdict("t\n</think>\n[[A]] [[A]]", j1) is None


def test_a_checkpoint_records_the_models_chat_format_and_judges_in_it(tmp_path):
    folder = model_folder(tmp_path / "r1", "deepseek_r1_distill_qwen")
    _, tok, template = load_judge(folder, "mt_bench_pair_think")
    config = {}
    templates.record(config, template, tok)  # what train_sft.py / train_grpo.py keep in the .pt
    fresh = Tokenizer.from_path(folder)
    assert templates.for_model(None, tmp_path / "sft.pt", {"run_config": config}, fresh) == template
    assert (fresh.chat_tokens, fresh.stop_ids, fresh.eos_id) == (tok.chat_tokens, tok.stop_ids,
                                                                 tok.eos_id)
    assert encode_prompt(fresh, *PAIR, template) == encode_prompt(tok, *PAIR, template)
