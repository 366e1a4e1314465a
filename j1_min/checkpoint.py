"""Checkpoint I/O: Hugging Face model directories and j1_min `.pt` files, read and written safely;
load_judge gives what a script needs of one, the model with its tokenizer and template.

A `.pt` file is a plain dict of tensors, numbers and strings that loads with
`torch.load(weights_only=True)`: {"format": "j1_min/1", "config": <HF config dict>, "model": <state
dict, HF names>, "tokenizer": <tokenizer.json text>, "train_state": <optional>}. Nothing is ever
unpickled beyond that, and every write is atomic.
"""
from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from . import templates
from .files import atomic_write
from .model import ModelConfig, Transformer
from .tokenizer import Tokenizer

PT_FORMAT = "j1_min/1"
ARCHITECTURES = {"qwen2": "Qwen2ForCausalLM", "llama": "LlamaForCausalLM",
                 "qwen3": "Qwen3ForCausalLM"}


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded as asked; the message names the file and the problem."""


# -----------------------------------------------------------------------------------------------
# config.json

def config_from_hf(d: dict, where: str = "config.json") -> ModelConfig:
    """ModelConfig from a config.json dict, as published (transformers 4: `rope_theta`,
    `torch_dtype` at the top) or as transformers 5 writes it (`rope_parameters`, `dtype`). Settings
    that change the math and are not implemented (rope scaling, sliding-window attention, MLP bias,
    another activation) raise CheckpointError."""
    if not isinstance(d, dict):
        raise CheckpointError(f"{where}: expected a JSON object of settings, got "
                              f"{type(d).__name__}")
    mtype = d.get("model_type")
    if not isinstance(mtype, str) or mtype not in ARCHITECTURES:
        raise CheckpointError(f"{where}: model_type {mtype!r} is not supported (supported: "
                              f"{sorted(ARCHITECTURES)})")

    def need(key):
        if key not in d:
            raise CheckpointError(f"{where}: missing required key {key!r}")
        return _positive(d, key, where)

    rope = d.get("rope_parameters") or {}
    scaling = d.get("rope_scaling") or {}
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if scaling or rope_type != "default":
        raise CheckpointError(f"{where}: rope scaling ({scaling or rope}) is not supported; only "
                              "plain RoPE is")
    sliding = d.get("use_sliding_window",
                    False) or "sliding_attention" in (d.get("layer_types") or [])
    if sliding:
        raise CheckpointError(f"{where}: sliding-window attention is switched on; it is not "
                              "supported")
    if d.get("mlp_bias", False):
        raise CheckpointError(f"{where}: mlp_bias=true is not supported")
    if d.get("hidden_act", "silu") != "silu":
        raise CheckpointError(f"{where}: hidden_act {d['hidden_act']!r} is not supported (only "
                              "silu)")
    heads = need("num_attention_heads")
    head_dim = (_positive(d, "head_dim", where) if d.get("head_dim") is not None
                else 128 if mtype == "qwen3" else need("hidden_size") // heads)
    kv_heads = _positive(d, "num_key_value_heads", where) if d.get("num_key_value_heads") else heads
    if heads % kv_heads or head_dim < 1:
        raise CheckpointError(f"{where}: num_attention_heads {heads} is not a multiple of "
                              f"num_key_value_heads {kv_heads}, or head_dim {head_dim} < 1")
    return ModelConfig(
        vocab_size=need("vocab_size"), hidden_size=need("hidden_size"),
        intermediate_size=need("intermediate_size"), num_hidden_layers=need("num_hidden_layers"),
        num_attention_heads=heads, num_key_value_heads=kv_heads, head_dim=head_dim,
        rms_norm_eps=_positive(d, "rms_norm_eps", where, 1e-6, float),
        rope_theta=_positive(rope, "rope_theta", where,
                             _positive(d, "rope_theta", where, 10000.0, float), float),
        max_position_embeddings=_positive(d, "max_position_embeddings", where, 4096),
        tie_word_embeddings=bool(d.get("tie_word_embeddings", False)),
        qkv_bias=mtype == "qwen2", o_bias=mtype != "qwen2" and bool(d.get("attention_bias", False)),
        qk_norm=mtype == "qwen3", model_type=mtype,
    )


def _positive(d: dict, key: str, where: str, default=None, kind=int):
    """d[key] (or default when absent) as a positive int (kind=int) or a positive finite number
    (kind=float)."""
    v = d.get(key, default)
    ok = (isinstance(v, int) if kind is int else isinstance(v, (int, float)) and math.isfinite(v))
    if isinstance(v, bool) or not ok or v <= 0:
        raise CheckpointError(f"{where}: {key} must be a positive "
                              f"{'integer' if kind is int else 'number'}, got {v!r}")
    return kind(v)


def config_to_hf(cfg: ModelConfig, dtype: torch.dtype = torch.float32) -> dict:
    """The config.json transformers needs to rebuild this model (both rope spellings, for
    transformers 4 and 5)."""
    d = dict(
        architectures=[ARCHITECTURES[cfg.model_type]], model_type=cfg.model_type,
        vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size, num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads, num_key_value_heads=cfg.num_key_value_heads,
        head_dim=cfg.head_dim, hidden_act="silu", rms_norm_eps=cfg.rms_norm_eps,
        rope_theta=cfg.rope_theta,
        rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta},
        max_position_embeddings=cfg.max_position_embeddings,
        tie_word_embeddings=cfg.tie_word_embeddings, torch_dtype=str(dtype).removeprefix("torch."),
        use_cache=True,
    )
    if cfg.model_type != "qwen2":
        d["attention_bias"] = cfg.o_bias
    if cfg.model_type in ("qwen2", "qwen3"):
        d.update(use_sliding_window=False, sliding_window=None)
    return d


# ------------------------------------------------------------------------------------------------
# helpers

def resolve_dtype(dtype, device, config_dict: dict | None = None) -> torch.dtype:
    """A torch.dtype from a dtype or its name; None means float32 on CPU and the checkpoint's dtype
    elsewhere."""
    if dtype is None:
        if torch.device(device or "cpu").type == "cpu" or not config_dict:
            return torch.float32
        dtype = config_dict.get("dtype") or config_dict.get("torch_dtype") or "float32"
    if isinstance(dtype, torch.dtype):
        return dtype
    name = str(dtype).removeprefix("torch.")
    if name not in ("float32", "float16", "bfloat16"):
        raise CheckpointError(f"dtype {dtype!r} is not supported (float32, float16, bfloat16)")
    return getattr(torch, name)


def build_model(cfg: ModelConfig, state: dict, where: str, dtype, device) -> Transformer:
    """Build the model on the meta device and adopt the loaded tensors (assign=True): no random
    init, no copy. Tensors that need another dtype or device are converted one at a time in
    `state` itself (the caller's dict), so each loaded tensor is freed as soon as its converted copy
    exists: loading a bf16 checkpoint as float32 peaks near the float32 model (4 bytes per
    parameter), not the checkpoint plus the float32 model (6 bytes per parameter)."""
    with torch.device("meta"):
        model = Transformer(cfg)
    expected = set(model.state_dict().keys())
    if cfg.tie_word_embeddings:
        expected.discard("lm_head.weight")
        # some tied checkpoints store it anyway; the embedding is the truth
        state.pop("lm_head.weight", None)
    missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or extra:
        raise CheckpointError(f"{where}: state dict does not match the config: missing keys "
                              f"{missing[:8]}{' ...' if len(missing) > 8 else ''}, unexpected keys "
                              f"{extra[:8]}{' ...' if len(extra) > 8 else ''}")
    shapes = model.state_dict()
    for k, t in state.items():
        if tuple(t.shape) != tuple(shapes[k].shape):
            raise CheckpointError(f"{where}: {k} has shape {tuple(t.shape)}, the config needs "
                                  f"{tuple(shapes[k].shape)}")
    for k in list(state):
        state[k] = state[k].to(device=device or "cpu", dtype=dtype)  # the original is freed here
    if cfg.tie_word_embeddings:
        state["lm_head.weight"] = state["model.embed_tokens.weight"]
    model.load_state_dict(state, assign=True)
    if cfg.tie_word_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
    return model.eval()


def read_pt(path) -> dict:
    """torch.load with weights_only=True: a file that needs real unpickling is refused and nothing
    in it runs."""
    if Path(path).is_file() and Path(path).stat().st_size == 0:
        raise CheckpointError(f"{path}: the file is empty (0 bytes): not a checkpoint")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError, EOFError,
            ValueError) as e:
        first = (str(e).splitlines() or [type(e).__name__])[0]
        raise CheckpointError(f"{path}: refused: not a plain-tensor checkpoint (loading it would "
                              "need to unpickle arbitrary objects, which j1_min never does, or the "
                              f"file is damaged): {first}") from None
    if not isinstance(ck, dict) or ck.get("format") != PT_FORMAT:
        raise CheckpointError(f"{path}: not a j1_min checkpoint (expected a dict with "
                              f"format={PT_FORMAT!r})")
    for key, kind in (("config", dict), ("model", dict), ("tokenizer", (str, type(None)))):
        if not isinstance(ck.get(key), kind):
            raise CheckpointError(f"{path}: damaged j1_min checkpoint: {key!r} is "
                                  f"{'missing' if key not in ck else type(ck[key]).__name__}")
    if not all(isinstance(t, torch.Tensor) for t in ck["model"].values()):
        raise CheckpointError(f"{path}: damaged j1_min checkpoint: 'model' holds something other "
                              "than tensors")
    return ck


# ------------------------------------------------------------------------------------------------
# sharded run folders train_*.py --shard writes a folder: step folders (dcp/ shards, run.pt, model/
# exported), and `latest` naming the current one (j1_min/shard.py:save writes it; reading it lives
# here, with the rest of loading).

RUN_FORMAT = "j1_min/sharded-run/1"
LATEST = "latest"


def is_run(path) -> bool:
    """Whether `path` is a sharded run folder with at least one checkpoint (a `latest` pointer)."""
    return (Path(path) / LATEST).is_file()


def latest(path) -> Path:
    """The current step folder of a sharded run folder."""
    return Path(path) / (Path(path) / LATEST).read_text().strip()


def model_folder(path) -> Path:
    """A sharded run folder's latest exported model (a Hugging Face folder); any other path is
    returned as is."""
    return latest(path) / "model" if is_run(path) else Path(path)


def read_run(path) -> dict:
    """The run.pt of a sharded run folder's latest step, and `dcp`, the folder of its Distributed
    Checkpoint."""
    step = latest(path)
    ck = torch.load(step / "run.pt", map_location="cpu", weights_only=True)
    if ck.get("format") != RUN_FORMAT:
        raise ValueError(f"{step / 'run.pt'}: not a j1_min sharded run (expected format "
                         f"{RUN_FORMAT!r})")
    return {**ck, "dcp": str(step / "dcp")}



# ------------------------------------------------------------------------------------------------
# load / save

def load_model(path, dtype=None, device=None):
    """Load (model, tokenizer_json_text_or_None, extra) from a HF directory, a `.pt` file, or a
    sharded run folder (train_*.py --shard: its latest checkpoint's exported model, model_folder).

    `extra` is the `.pt` dict without its model weights (config, train_state, ...) or {"config":
    config.json} (with a sharded run's "run_config" too).
    """
    run_config = read_run(path)["run_config"] if is_run(path) else None
    path = model_folder(path)
    # the real-weights fixture is made by a script, not downloaded here: say which
    fixture = (f" (make it with: python scripts/get_smollm2.py --out {path} --force)"
               if "smollm2" in path.name.lower() else "")
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or directory{fixture}")
    if path.is_dir():
        cfg_path = path / "config.json"
        if not cfg_path.is_file():
            raise CheckpointError(
                f"{path}: a model directory needs config.json, and there is none{fixture}")
        try:
            config_dict = json.loads(cfg_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
            raise CheckpointError(f"{cfg_path}: not valid JSON ({e})") from None
        cfg = config_from_hf(config_dict, str(cfg_path))
        state = {}
        for f in _shards(path):
            try:
                state.update(load_file(str(f)))
            except Exception as e:  # safetensors raises its own SafetensorError for a damaged file
                raise CheckpointError(f"{f}: not a readable safetensors file ({e})") from None
        tok = path / "tokenizer.json"
        tok_where, tok_text = tok, (tok.read_bytes().decode("utf-8", "replace") if tok.is_file()
                                    else None)
        extra = {"config": config_dict} if run_config is None else {"config": config_dict,
                                                                    "run_config": run_config}
    else:
        ck = read_pt(path)
        config_dict = ck["config"]
        cfg = config_from_hf(config_dict, f"{path} (config)")
        state, tok_text, tok_where = ck.pop("model"), ck.get("tokenizer"), f"{path} (tokenizer)"
        extra = ck
    if tok_text is not None:
        _check_tokenizer(tok_text, tok_where, cfg.vocab_size)
    model = build_model(cfg, state, str(path), resolve_dtype(dtype, device, config_dict), device)
    return model, tok_text, extra


def load_judge(path, template: str | None = None, dtype=None, device=None):
    """(model, tokenizer, template) of a judge, what every script loads: load_model, its tokenizer
    (a checkpoint without one is refused: a judge reads and writes text), and the template to judge
    or train with (templates.for_model: `template`, a --template name or file, if given; else the
    one the checkpoint recorded; else j1_min)."""
    model, tok_text, extra = load_model(path, dtype=dtype, device=device)
    if tok_text is None:
        raise CheckpointError(f"{path}: the checkpoint has no tokenizer (tokenizer.json); a judge "
                              f"needs one to read and write text")
    tok = Tokenizer.from_json(tok_text, path)
    return model, tok, templates.for_model(template, path, extra, tok)


def _shards(path: Path) -> list[Path]:
    """The safetensors files of a model folder: model.safetensors, or every file its index names
    (all present)."""
    index = path / "model.safetensors.index.json"
    if not index.is_file():
        if (path / "model.safetensors").is_file():
            return [path / "model.safetensors"]
        raise CheckpointError(f"{path}: no model.safetensors or model.safetensors.index.json")
    try:
        weight_map = json.loads(index.read_text()).get("weight_map")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as e:
        raise CheckpointError(f"{index}: not a JSON object ({e})") from None
    if not isinstance(weight_map, dict) or not all(isinstance(f, str) for f in weight_map.values()):
        raise CheckpointError(f"{index}: needs a 'weight_map' of tensor name -> file name")
    files = [path / f for f in sorted(set(weight_map.values()))]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise CheckpointError(f"{index}: names shards that are missing: {missing[:4]}")
    return files


def _check_tokenizer(text: str, where, vocab: int) -> None:
    """A tokenizer that parses and whose ids all have a row in the model's embedding."""
    n = Tokenizer.from_json(text, where).vocab_size
    if n > vocab:
        raise CheckpointError(f"{where}: the tokenizer has {n} ids but the model's embedding only "
                              f"{vocab} rows: they do not belong together")


def _state_to_save(model: Transformer) -> dict:
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight")
    return state


# save_hf: larger models are split into files of about this size (transformers' default)
SHARD_BYTES = 5 * 10**9


def save_hf(model: Transformer, directory, tokenizer=None, extra_config: dict | None = None,
            chat_template: str | None = None, max_shard_bytes: int = SHARD_BYTES) -> None:
    """Write config.json, the weights and (if given) tokenizer.json and chat_template.jinja into
    `directory`, each file atomically. Weights over max_shard_bytes go to
    model-0000k-of-0000n.safetensors files named by model.safetensors.index.json, as transformers
    writes them; else one model.safetensors. extra_config: keys added to config.json (the template a
    run trained with, under "j1_min")."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.cpu() for k, v in _state_to_save(model).items()}
    dtype = next(iter(state.values())).dtype
    config = {**config_to_hf(model.config, dtype), **(extra_config or {})}
    files, size = [{}], 0
    for k, v in state.items():
        nbytes = v.numel() * v.element_size()
        if files[-1] and size + nbytes > max_shard_bytes:
            files.append({})
            size = 0
        files[-1][k] = v
        size += nbytes
    if len(files) == 1:
        atomic_write(directory / "model.safetensors",
                     lambda p: save_file(state, p, metadata={"format": "pt"}))
    else:
        names = [f"model-{i + 1:05d}-of-{len(files):05d}.safetensors" for i in range(len(files))]
        for name, part in zip(names, files):
            atomic_write(directory / name,
                         lambda p, part=part: save_file(part, p, metadata={"format": "pt"}))
        index = {"metadata": {"total_size": sum(v.numel() * v.element_size()
                                                for v in state.values())},
                 "weight_map": {k: name for name, part in zip(names, files) for k in part}}
        atomic_write(directory / "model.safetensors.index.json",
                     lambda p: Path(p).write_text(json.dumps(index, indent=2) + "\n"))
    atomic_write(directory / "config.json",
                 lambda p: Path(p).write_text(json.dumps(config, indent=2) + "\n"))
    if tokenizer is not None:
        text = tokenizer if isinstance(tokenizer, str) else tokenizer.to_json()
        atomic_write(directory / "tokenizer.json", lambda p: Path(p).write_text(text))
    if chat_template:
        atomic_write(directory / "chat_template.jinja", lambda p: Path(p).write_text(chat_template))


def save_pt(path, model: Transformer, tokenizer=None, **extra) -> None:
    """Write a `.pt` checkpoint atomically: config, HF-named weights, tokenizer JSON and any plain
    extras."""
    ck = {"format": PT_FORMAT, "config": config_to_hf(model.config, model.lm_head.weight.dtype),
          "model": {k: v.cpu() for k, v in _state_to_save(model).items()}}
    if tokenizer is not None:
        ck["tokenizer"] = tokenizer if isinstance(tokenizer, str) else tokenizer.to_json()
    ck.update(extra)
    atomic_write(path, lambda p: torch.save(ck, p))
