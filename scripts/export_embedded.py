"""Export a trained judge as the embedded default: a Hugging Face folder under j1_min/embedded/
(config.json, model.safetensors, tokenizer.json, README.md) plus the synthetic test set judge.py
evaluates by default.

    python scripts/export_embedded.py runs/reproduce/j1_rl.pt --test runs/reproduce/test.jsonl \\
        --command "SEED=0 bash scripts/reproduce.sh"

The folder's config.json and README.md record the commit and the command that produced the
checkpoint.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import textwrap
from pathlib import Path

from j1_min.checkpoint import load_model, save_hf
from j1_min.files import atomic_write

ROOT = Path(__file__).resolve().parents[1]
DEST = ROOT / "j1_min" / "embedded"


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("ckpt", help="the .pt checkpoint to ship")
    ap.add_argument("--test", required=True, help="the test pairs to ship as "
                                                  "j1_min/embedded/test.jsonl")
    ap.add_argument("--command", required=True, help="the command that produced the checkpoint "
                                                     "(recorded)")
    ap.add_argument("--commit", help="the commit whose code trained the checkpoint, when it is not "
                                     "this checkout's HEAD (e.g. the run was made in a worktree of "
                                     "an earlier commit)")
    ap.add_argument("--note", default="", help="a paragraph for the folder's README (why this "
                                               "checkpoint)")
    ap.add_argument("--dest", default=str(DEST), help="embedded folder (default j1_min/embedded)")
    args = ap.parse_args()
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()
    if args.commit:
        commit, dirty = args.commit, ""
    provenance = {"commit": commit + ("-dirty" if dirty else ""), "command": args.command,
                  "checkpoint": Path(args.ckpt).name}
    model, tok_text, extra = load_model(args.ckpt)
    dest = Path(args.dest)
    folder = dest / "j1-tiny"
    save_hf(model, folder, tok_text)
    config = json.loads((folder / "config.json").read_text())
    config["j1_min"] = provenance  # transformers keeps unknown keys; j1_min ignores this one
    atomic_write(folder / "config.json",
                 lambda p: Path(p).write_text(json.dumps(config, indent=2) + "\n"))
    shutil.copyfile(args.test, dest / "test.jsonl")
    run = extra.get("run_config", {})
    stage = ("J1-SFT + GRPO: train_grpo.py " + f"(steps {run.get('steps')}, lr {run.get('lr')}, "
                                               f"group {run.get('group')})"
             if "group" in run else "J1-SFT: train_sft.py " + f"(steps {run.get('steps')}, lr "
                                                              f"{run.get('lr')})")
    readme = f"""# j1-tiny: the embedded default judge

A {model.num_params() / 1e6:.1f}M-parameter Qwen2-architecture judge trained by this project's
own pipeline (`scripts/reproduce.sh`: programmatic reflection traces -> train_sft.py ->
train_grpo.py) on the synthetic arithmetic-checking task (`j1_min/tasks.py`). `python judge.py`
loads it by default and evaluates it on `../test.jsonl`, the task's test split (questions never
seen in training).

- commit: `{provenance['commit']}`
- command: `{args.command}`
{textwrap.fill(f"- checkpoint exported: `{provenance['checkpoint']}`, the output of {stage}, seed "
               f"{run.get('seed')}", 100, subsequent_indent="  ")}

{textwrap.fill(args.note, 100)}

It loads with `j1_min.checkpoint.load_model` and with `transformers.AutoModelForCausalLM` +
`PreTrainedTokenizerFast(tokenizer_file=...)`; tests/test_embedded.py checks both give the same
greedy verdicts.
"""
    atomic_write(folder / "README.md", lambda p: Path(p).write_text(readme))
    print(f"wrote {folder} and {dest / 'test.jsonl'} ({provenance})")


if __name__ == "__main__":
    main()
