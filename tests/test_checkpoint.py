"""Checkpoints: `.pt` round trip, refusal of pickled code, loading a judge, clear errors for broken
inputs."""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from j1_min.checkpoint import CheckpointError, load_judge, load_model, save_pt
from j1_min.tokenizer import Tokenizer, train_bpe


@pytest.fixture
def model_dir(saved_hf):
    return saved_hf("qwen2_tied")[1]


def test_pt_round_trip_keeps_model_tokenizer_and_config(model_dir, tmp_path):
    tok = train_bpe(["What is 12 + 34? The answer is 46."] * 20, vocab_size=300)
    m = load_model(model_dir)[0]
    save_pt(tmp_path / "m.pt", m, tok, train_state={"step": 7})
    raw = torch.load(tmp_path / "m.pt", weights_only=True)  # loads without unpickling any object
    assert raw["train_state"]["step"] == 7
    m2, tok_text, extra = load_model(tmp_path / "m.pt")
    assert m2.config == m.config
    x = torch.randint(0, 320, (2, 10))
    with torch.no_grad():
        assert torch.equal(m(x), m2(x))
    assert Tokenizer.from_json(tok_text).encode("answer is 46") == tok.encode("answer is 46")
    assert load_judge(tmp_path / "m.pt")[1].vocab_size == tok.vocab_size
    assert m2.lm_head.weight.data_ptr() == m2.model.embed_tokens.weight.data_ptr()  # still tied


class _Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))  # unpickling this would create a file


def test_malicious_pickle_is_refused_and_never_runs(tmp_path):
    target = tmp_path / "pwned"
    bad = tmp_path / "bad.pt"
    with open(bad, "wb") as f:
        pickle.dump({"format": "j1_min/1", "x": _Evil(str(target))}, f)
    with pytest.raises(CheckpointError, match="refused"):
        load_model(bad)
    assert not target.exists()


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        load_model(tmp_path / "nope")


def test_a_missing_or_partial_real_weights_fixture_names_the_script_that_makes_it(tmp_path):
    with pytest.raises(CheckpointError, match="python scripts/get_smollm2.py --out"):
        load_model(tmp_path / "smollm2-135m")
    (tmp_path / "smollm2-135m").mkdir()
    with pytest.raises(CheckpointError, match="needs config.json.*get_smollm2.py"):
        load_model(tmp_path / "smollm2-135m")
    with pytest.raises(CheckpointError, match=r"no such file or directory$"):
        load_model(tmp_path / "other")  # any other folder: no hint


def test_directory_without_config_json_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="needs config.json"):
        load_model(tmp_path)


def test_unsupported_architecture_is_a_clear_error(model_dir):
    cfg = json.loads((model_dir / "config.json").read_text())
    cfg["model_type"] = "gpt2"
    (model_dir / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="model_type 'gpt2' is not supported"):
        load_model(model_dir)


def test_missing_and_extra_keys_are_named(model_dir):
    sd = load_file(str(model_dir / "model.safetensors"))
    del sd["model.norm.weight"]
    sd["model.extra.weight"] = torch.zeros(3)
    save_file(sd, str(model_dir / "model.safetensors"))
    with pytest.raises(CheckpointError) as e:
        load_model(model_dir)
    assert "model.norm.weight" in str(e.value) and "model.extra.weight" in str(e.value)


def test_wrong_shape_is_named(model_dir):
    sd = load_file(str(model_dir / "model.safetensors"))
    sd["model.norm.weight"] = torch.ones(5)
    save_file(sd, str(model_dir / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"model.norm.weight has shape \(5,\)"):
        load_model(model_dir)


def test_pt_that_is_not_ours_is_refused(tmp_path):
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a j1_min checkpoint"):
        load_model(tmp_path / "other.pt")


def test_load_judge_gives_model_tokenizer_and_template_or_one_error_without_a_tokenizer(
        model_dir, tmp_path):
    tok = train_bpe(["What is 12 + 34? The answer is 46."] * 20, vocab_size=300)
    save_pt(tmp_path / "m.pt", load_model(model_dir)[0], tok)
    model, tok2, template = load_judge(tmp_path / "m.pt")
    assert tok2.encode("answer is 46") == tok.encode("answer is 46") and template.name == "j1_min"
    save_pt(tmp_path / "bare.pt", model)  # no tokenizer
    with pytest.raises(CheckpointError, match=r"bare.pt: the checkpoint has no tokenizer "
                                              r"\(tokenizer.json\)"):
        load_judge(tmp_path / "bare.pt")


def test_load_in_bfloat16_by_name(model_dir):
    m = load_model(model_dir, dtype="bfloat16")[0]
    assert m.lm_head.weight.dtype == torch.bfloat16
    with pytest.raises(CheckpointError, match="dtype"):
        load_model(model_dir, dtype="int8")[0]


def _break(case: str, d: Path, tmp_path: Path) -> tuple[Path, str]:
    """Damage a saved model in one way; return (the path to load, a piece of the message naming what
    is wrong)."""
    st, cfg_path = d / "model.safetensors", d / "config.json"
    cfg = json.loads(cfg_path.read_text())
    pt = tmp_path / "x.pt"
    if case == "truncated safetensors":
        st.write_bytes(st.read_bytes()[:-100])
        return d, "model.safetensors: not a readable safetensors file"
    if case == "garbage safetensors":
        st.write_bytes(b"garbage" * 20)
        return d, "model.safetensors: not a readable safetensors file"
    if case == "empty pt":
        pt.write_bytes(b"")
        return pt, "x.pt: the file is empty"
    if case == "pt without its keys":
        torch.save({"format": "j1_min/1"}, pt)
        return pt, "x.pt: damaged j1_min checkpoint: 'config' is missing"
    if case == "pt with a string config":
        torch.save({"format": "j1_min/1", "config": "qwen2", "model": {}}, pt)
        return pt, "x.pt: damaged j1_min checkpoint: 'config' is str"
    if case in ("config hidden_size list", "config hidden_size string", "config negative vocab"):
        key, value = {"config hidden_size list": ("hidden_size", [64]),
                      "config hidden_size string": (
            "hidden_size", "64"), "config negative vocab": ("vocab_size", -1)}[case]
        cfg_path.write_text(json.dumps({**cfg, key: value}))
        return d, f"config.json: {key} must be a positive integer"
    if case == "config that is a list":
        cfg_path.write_text("[1, 2]")
        return d, "config.json: expected a JSON object"
    if case == "bad index":
        (d / "model.safetensors.index.json").write_text("{not json")
        return d, "model.safetensors.index.json: not a JSON object"
    if case == "missing shard":
        (d / "model.safetensors.index.json").write_text(
            json.dumps({"weight_map": {"a": "model-2.safetensors"}}))
        return d, "names shards that are missing: ['model-2.safetensors']"
    if case == "malformed tokenizer":
        (d / "tokenizer.json").write_text('{"version": ')
        return d, "tokenizer.json: not a valid tokenizer.json"
    if case == "tokenizer larger than the embedding":
        (d / "tokenizer.json").write_text(train_bpe(["What is 12 + 34? a b c d e f g"] * 50 + [
            " ".join(chr(0x4e00 + i) for i in range(900))], vocab_size=1000).to_json())
        return d, "tokenizer.json: the tokenizer has"
    raise ValueError(case)


BROKEN = ["truncated safetensors", "garbage safetensors", "empty pt", "pt without its keys",
          "pt with a string config", "config hidden_size list", "config hidden_size string",
          "config negative vocab", "config that is a list", "bad index", "missing shard",
          "malformed tokenizer", "tokenizer larger than the embedding"]


@pytest.mark.parametrize("case", BROKEN)
def test_a_damaged_checkpoint_is_a_one_line_error_naming_the_file(model_dir, tmp_path, case,
                                                                  capsys):
    import judge
    (model_dir / "tokenizer.json").write_text(train_bpe(["What is 12 + 34?"] * 20,
                                                        vocab_size=300).to_json())
    path, message = _break(case, model_dir, tmp_path)
    with pytest.raises(ValueError) as e:  # CheckpointError, or the tokenizer's ValueError
        load_model(path)
    assert message in str(e.value)
    with pytest.raises(SystemExit) as e:
        judge.run_cli(["--ckpt", str(path), "--question", "q", "--a", "a", "--b", "b"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err and "Traceback" not in err
