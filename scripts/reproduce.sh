#!/usr/bin/env bash
# The whole J1 recipe in miniature, on CPU, from nothing, with fixed seeds (README "Results"):
#   data_gen -> train_sft (plain traces, and reflection traces) -> train_grpo (on J1-SFT) -> judge at budgets 0-3
# and the embedded default judge exported from the J1-SFT+GRPO checkpoint.
#
#   bash scripts/reproduce.sh                 # about 75 minutes on 2 CPU cores; outputs under runs/reproduce/
#   SEED=1 OUT=runs/seed1 bash scripts/reproduce.sh
#   EXPORT=1 bash scripts/reproduce.sh        # also (re)write j1_min/embedded/ from this run
#
# A finished step is not redone: rerunning after a kill resumes the interrupted training from its checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
SEED=${SEED:-0}
OUT=${OUT:-runs/reproduce}
SFT_STEPS=${SFT_STEPS:-700}        # batch 32: about 2.2 epochs of the 10,000 traces
GRPO_STEPS=${GRPO_STEPS:-60}       # 8 prompts x 8 samples per step
TEST_N=${TEST_N:-1000}
mkdir -p "$OUT"

step() { echo; echo "=== $*"; }
once() {  # once OUTPUT COMMAND...: run COMMAND unless OUTPUT exists (every output is written atomically)
  local out=$1; shift
  if [ -e "$out" ]; then echo "(have $out)"; return; fi
  "$@"
}
train() {  # train OUTPUT SCRIPT ARGS...: a finished run is kept; an interrupted one resumes from its checkpoint
  local out=$1 script=$2; shift 2
  if [ -e "$out.done" ]; then echo "(have $out)"; return; fi
  if [ -e "$out" ]; then python "$script" "$@" --out "$out" --resume "$out"
  else python "$script" "$@" --out "$out"; fi
  touch "$out.done"
}

step "data (seed $SEED)"
once "$OUT/rl_pairs.jsonl" python data_gen.py pairs --n 10000 --split train --seed "$SEED" --out "$OUT/rl_pairs.jsonl"
once "$OUT/val.jsonl" python data_gen.py pairs --n 300 --split val --seed "$SEED" --out "$OUT/val.jsonl"
once "$OUT/test.jsonl" python data_gen.py pairs --n "$TEST_N" --split test --seed 0 --out "$OUT/test.jsonl"
# J1 traces: 0-4 reflections, so a judge sees a check follow a check (the route alternates) before forcing asks it to
once "$OUT/traces_j1.jsonl" python data_gen.py traces --n 10000 --split train --seed "$SEED" \
  --reflections 0.35,0.4,0.15,0.05,0.05 --out "$OUT/traces_j1.jsonl"
once "$OUT/traces_plain.jsonl" python data_gen.py traces --n 10000 --split train --seed "$SEED" --no-reflection \
  --out "$OUT/traces_plain.jsonl"

SFT=(--init tiny --steps "$SFT_STEPS" --batch 32 --micro 32 --lr 1e-3 --warmup 20 --dtype bfloat16 --seed "$SEED"
     --val "$OUT/val.jsonl" --eval-items 100 --eval-every 100 --save-every 50 --max-new-tokens 400)
step "SFT on plain traces (the ordinary judge)"
train "$OUT/plain_sft.pt" train_sft.py --data "$OUT/traces_plain.jsonl" "${SFT[@]}"
step "SFT on reflection traces (J1-SFT)"
train "$OUT/j1_sft.pt" train_sft.py --data "$OUT/traces_j1.jsonl" "${SFT[@]}"

GRPO=(--data "$OUT/rl_pairs.jsonl" --val "$OUT/val.jsonl" --steps "$GRPO_STEPS" --prompts 8 --group 8 --lr 1e-5
      --max-new-tokens 400 --eval-every 20 --eval-items 200 --save-every 10 --seed "$SEED")
step "GRPO on J1-SFT (J1-SFT + RL)"
train "$OUT/j1_rl.pt" train_grpo.py --ckpt "$OUT/j1_sft.pt" "${GRPO[@]}"
if [ "${PLAIN_RL:-0}" = 1 ]; then
  step "GRPO on the plain-SFT judge (RL without reflection data)"
  train "$OUT/plain_rl.pt" train_grpo.py --ckpt "$OUT/plain_sft.pt" "${GRPO[@]}"
fi

step "evaluation: budgets 0-3 on $TEST_N test pairs"
for row in plain_sft j1_sft j1_rl plain_rl; do
  [ -e "$OUT/$row.pt.done" ] || continue
  once "$OUT/judge_$row.jsonl" python judge.py --ckpt "$OUT/$row.pt" --data "$OUT/test.jsonl" --budgets 0,1,2,3 \
    --max-new-tokens 600 --examples 0 --out "$OUT/judge_$row.jsonl"
done
python scripts/results.py "$OUT" --plot "$OUT/scaling.png"

if [ "${EXPORT:-0}" = 1 ]; then
  step "export the embedded judge"
  python scripts/export_embedded.py "$OUT/j1_rl.pt" --test "$OUT/test.jsonl" \
    --command "SEED=$SEED bash scripts/reproduce.sh"
fi
