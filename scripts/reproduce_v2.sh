#!/usr/bin/env bash
# The second experiment (issue 32, docs/experiment.md: the frozen protocol), one seed end to end on CPU, in stages
# that resume after a kill:
#   data_gen (teacher v2: RL pairs and validation pairs of this seed; the test pairs of the fixed test seed 2032,
#   excluding the first experiment's test questions; J1 and plain traces from the same teacher draws)
#   -> train_sft (J1-SFT, then the ordinary judge on plain traces; SFT_STEPS chosen on validation)
#   -> train_grpo --algo reinforce_pp with the stopping rule (validation at budgets 0 and 3, --patience, --keep-best):
#      J1-SFT + RL, J1-SFT + RL with budget-forced rollouts (budget 0-3 drawn per group), plain SFT + RL
#   -> judge.py per row on the test pairs: greedy at budgets 0-3 (sequential), and K sampled traces at budget 0
#      (parallel; K odd, matched to budget 3's thinking tokens; sample 0 is the sampled K = 1 control, budget 0 of
#      the greedy pass the greedy K = 1 control)
#   -> every judgments file gzipped (*.jsonl.gz, for committing) -> scripts/results.py (tables, plots).
#
#   bash scripts/reproduce_v2.sh                       # seed 0; outputs under runs/v2seed0/
#   SEED=1 bash scripts/reproduce_v2.sh                # another seed: data, initialisation, sampling; same test pairs
#   SEED=3 RL_ROWS=j1_rpp bash scripts/reproduce_v2.sh # seeds 3 and 4: the primary pair's RL row only (the protocol)
#   MODEL=tiny4x OUT=runs/v2seed0_tiny4x SFT_ROWS=j1_sft RL_ROWS=j1_rpp bash scripts/reproduce_v2.sh  # the larger-
#       model check (docs/experiment.md): seed 0's data, a judge four times larger, the primary pair only
#   SEED=0 OUT=runs/v2seed0 STOP_AFTER=j1_sft bash scripts/reproduce_v2.sh   # the SFT length search: J1-SFT only,
#       its validation curve in runs/v2seed0/j1_sft.log.jsonl (val_acc every SFT_EVAL_EVERY steps)
#   python scripts/results.py runs/v2seed0 runs/v2seed1 ... --plot scaling.png --rl-plot rl.png
#
# A finished stage is not redone: rerunning after a kill resumes an interrupted training from its checkpoint and an
# interrupted judge.py from its .partial file. Each stage that runs appends "stage seconds" to $OUT/times.log. The
# settings are written to $OUT/settings.txt by the first run; a rerun with other settings is refused (another
# setting needs another OUT). Every choice is made on the validation pairs (val.jsonl, --val of the trainers); the
# test pairs are only judged.
set -euo pipefail
cd "$(dirname "$0")/.."
SEED=${SEED:-0}
OUT=${OUT:-runs/v2seed$SEED}
# the task (data_gen.py --help): carry and digit slips only, so a slipped check can land on the wrong response
DIGITS=${DIGITS:-2-3}; MUL_DIGITS=${MUL_DIGITS:-2-3x1}; OPS=${OPS:-+-*}; WRONG_KINDS=${WRONG_KINDS:-carry,digit}
SLIP_RATE=${SLIP_RATE:-0.3}; LAND=${LAND:-0.6}       # teacher v2, chosen on validation seed 0 (docs/experiment.md)
# J1 traces: weights of 0, 1, ..., 5 unprompted reflections (docs/logs/experiment_v2/sft_reflections/). Two rules,
# both learned from seed 0's validation pairs: (1) the data must hold the tallies forcing reaches (0.3,0.5,0.2 stopped
# at a lead of 3, and its J1-SFT broke the tally's chain past it); (2) greedy decoding stops at the first reflection
# where the chance to stop exceeds 1/2, after every reflection, forced ones included (0.45,0.2,0.1,0.1,0.1,0.05 stops
# after 4 at budget 0; 0.3,0.4,0.1,0.1,0.05,0.05 stops after 1, but after a forced second goes on to 5, so 9% of its
# budget-3 traces ran out of tokens). Here the chance to stop is 0.3 after the first pass and 0.6-0.64 after each
# reflection (about geometric), and 11% of the traces hold 3 or more reflections, 4% 4 or 5
REFLECTIONS=${REFLECTIONS:-0.3,0.42,0.17,0.07,0.025,0.015}
TRACES_N=${TRACES_N:-10000}; RL_N=${RL_N:-10000}; VAL_N=${VAL_N:-300}
TEST_N=${TEST_N:-1000}; TEST_SEED=${TEST_SEED:-2032}  # drawn once for v2, never used before
# SFT: the same steps for both SFTs, chosen on validation (J1-SFT's budget-0 validation accuracy): 1,000 (about 3
# epochs of 10,000 traces). Seed 0's J1-SFT on the first reflection weights scored 0.47, 0.63, 0.82, 0.86 on 100
# validation pairs at steps 250, 500, 750, 1,000, and 0.880 on all 300 at step 1,000 (the teacher's own budget-0
# accuracy is 0.866): the end of the cosine schedule is where it stops gaining (docs/logs/experiment_v2/)
SFT_STEPS=${SFT_STEPS:-1000}; SFT_BATCH=${SFT_BATCH:-32}; SFT_LR=${SFT_LR:-1e-3}
SFT_EVAL_EVERY=${SFT_EVAL_EVERY:-250}; SFT_EVAL_ITEMS=${SFT_EVAL_ITEMS:-100}; SFT_MAX_NEW=${SFT_MAX_NEW:-600}
# RL: REINFORCE++ (J1-7B's algorithm). The learning rate was chosen on seed 0's validation pairs, J1-SFT + RL: 1e-5
# (budget-3 validation 253-259 of 300 at steps 25-100) over 3e-5 (229-241, and more traces without a verdict);
# prompts per step: the first experiment's 8 x 8, not tuned. The stopping rule (docs/experiment.md): validate every
# 25 steps on 300 pairs at budgets 0 and 3; step 0 (the SFT model) is the reference, not a candidate; stop after 4
# points without 2 more pairs right at budget 3 than the best trained point, or at 1,000 steps, or after 4 hours;
# the best trained point's weights are the row's checkpoint (<row>.best.pt).
RL_LR=${RL_LR:-1e-5}; RL_PROMPTS=${RL_PROMPTS:-8}; RL_GROUP=${RL_GROUP:-8}; RL_STEPS=${RL_STEPS:-1000}
RL_EVAL_EVERY=${RL_EVAL_EVERY:-25}; RL_EVAL_ITEMS=${RL_EVAL_ITEMS:-300}; RL_PATIENCE=${RL_PATIENCE:-4}
RL_MIN_IMPROVEMENT=${RL_MIN_IMPROVEMENT:-2}; RL_MAX_HOURS=${RL_MAX_HOURS:-4}; RL_BUDGETS=${RL_BUDGETS:-0-3}
# bf16 autocast for the update (float32 master weights; rollouts stay float32): 1.68x the update and
# 1.40x the step on this AVX512-BF16 CPU (docs/performance.md, bench/grpo.py --dtype both)
RL_DTYPE=${RL_DTYPE:-bfloat16}
# teacher v2's budget-3 traces: 476 tokens on average, 99th percentile 854; the tiny model's context is 1,024 tokens
# and a prompt about 140-155 (the smoke run's BPE; a longer one is refused by name, never skipped): 850 new tokens
MAX_NEW=${MAX_NEW:-850}
# no cap on thinking (s1's other half, --max-think-tokens): a trace that runs out of tokens has no verdict and scores 0
PAR_TEMPERATURE=${PAR_TEMPERATURE:-1.0}  # parallel scaling's sampling temperature (RL's rollout temperature)
# the judge's size: tiny (~4.6M, every row) or tiny4x (~18.4M: the larger-model check if the primary comparison is
# null, one seed; train_sft.py --init)
MODEL=${MODEL:-tiny}
STOP_AFTER=${STOP_AFTER:-}  # "j1_sft" (the SFT length search), "sft" (both SFTs), or an RL row's name
# the RL rows trained and judged (not a setting: it says which rows, not how): all three for seeds 0-2, the primary
# row j1_rpp alone for seeds 3 and 4 (the protocol: 5 seeds for the primary pair, 3 for the other rows)
RL_ROWS=${RL_ROWS:-j1_rpp j1_rpp_budget plain_rpp}
# the SFT rows trained and judged: both for every seed of the protocol; the larger-model check (MODEL=tiny4x, one
# seed, the primary pair) needs only j1_sft (SFT_ROWS=j1_sft RL_ROWS=j1_rpp)
SFT_ROWS=${SFT_ROWS:-j1_sft plain_sft}
for row in $SFT_ROWS; do  # checked before any stage runs
  case $row in j1_sft|plain_sft) ;;
    *) echo "error: SFT_ROWS: unknown row '$row' (j1_sft, plain_sft)" >&2; exit 2;; esac
done
declare -A START=([j1_rpp]=j1_sft [j1_rpp_budget]=j1_sft [plain_rpp]=plain_sft)
for row in $RL_ROWS; do
  case $row in j1_rpp|j1_rpp_budget|plain_rpp) ;;
    *) echo "error: RL_ROWS: unknown row '$row' (j1_rpp, j1_rpp_budget, plain_rpp)" >&2; exit 2;; esac
  case " $SFT_ROWS " in *" ${START[$row]} "*) ;;
    *) echo "error: RL_ROWS: $row starts from ${START[$row]}, which SFT_ROWS leaves out" >&2; exit 2;; esac
done
mkdir -p "$OUT"

# the resolved settings: written once, compared on every rerun (STOP_AFTER may differ)
SETTINGS="TEACHER_VERSION=v2
SEED=$SEED
DIGITS=$DIGITS MUL_DIGITS=$MUL_DIGITS OPS=$OPS WRONG_KINDS=$WRONG_KINDS
SLIP_RATE=$SLIP_RATE LAND=$LAND REFLECTIONS=$REFLECTIONS
TRACES_N=$TRACES_N RL_N=$RL_N VAL_N=$VAL_N TEST_N=$TEST_N TEST_SEED=$TEST_SEED
SFT_STEPS=$SFT_STEPS SFT_BATCH=$SFT_BATCH SFT_LR=$SFT_LR SFT_EVAL_EVERY=$SFT_EVAL_EVERY SFT_EVAL_ITEMS=$SFT_EVAL_ITEMS
SFT_MAX_NEW=$SFT_MAX_NEW
RL_LR=$RL_LR RL_PROMPTS=$RL_PROMPTS RL_GROUP=$RL_GROUP RL_STEPS=$RL_STEPS RL_EVAL_EVERY=$RL_EVAL_EVERY
RL_EVAL_ITEMS=$RL_EVAL_ITEMS RL_PATIENCE=$RL_PATIENCE RL_MIN_IMPROVEMENT=$RL_MIN_IMPROVEMENT RL_MAX_HOURS=$RL_MAX_HOURS
RL_BUDGETS=$RL_BUDGETS RL_DTYPE=$RL_DTYPE MAX_NEW=$MAX_NEW PAR_TEMPERATURE=$PAR_TEMPERATURE"
# MODEL is recorded only when it is not tiny (the folders written before it existed hold tiny models)
if [ "$MODEL" != tiny ]; then SETTINGS="$SETTINGS
MODEL=$MODEL"; fi
if [ -e "$OUT/settings.txt" ]; then
  if [ "$(cat "$OUT/settings.txt")" != "$SETTINGS" ]; then
    echo "error: $OUT was run with other settings (diff $OUT/settings.txt against these):" >&2
    diff <(echo "$SETTINGS") "$OUT/settings.txt" >&2 || true
    exit 2
  fi
else
  echo "$SETTINGS" > "$OUT/settings.txt.tmp" && mv "$OUT/settings.txt.tmp" "$OUT/settings.txt"
fi
TASK=(--digits "$DIGITS" --mul-digits "$MUL_DIGITS" --ops "$OPS" --wrong-kinds "$WRONG_KINDS")
TEACHER=(--teacher-version v2 --slip-rate "$SLIP_RATE" --land "$LAND")

# step, timed, once, train, judged
source scripts/stages.sh
stop_here() { if [ "$STOP_AFTER" = "$1" ]; then cat "$OUT/times.log"; exit 0; fi; }

step "data (seed $SEED; test pairs: seed $TEST_SEED, no question of j1_min/embedded/test.jsonl)"
once "$OUT/rl_pairs.jsonl" python data_gen.py pairs --n "$RL_N" --split train --seed "$SEED" "${TASK[@]}" \
  --out "$OUT/rl_pairs.jsonl"
once "$OUT/val.jsonl" python data_gen.py pairs --n "$VAL_N" --split val --seed "$SEED" "${TASK[@]}" \
  --out "$OUT/val.jsonl"
once "$OUT/test.jsonl" python data_gen.py pairs --n "$TEST_N" --split test --seed "$TEST_SEED" "${TASK[@]}" \
  --exclude j1_min/embedded/test.jsonl --out "$OUT/test.jsonl"
# the same teacher draws both kinds (same checks, same slips); the plain teacher stops after its first pass
once "$OUT/traces_j1.jsonl" python data_gen.py traces --n "$TRACES_N" --split train --seed "$SEED" "${TASK[@]}" \
  "${TEACHER[@]}" --reflections "$REFLECTIONS" --out "$OUT/traces_j1.jsonl"
once "$OUT/traces_plain.jsonl" python data_gen.py traces --n "$TRACES_N" --split train --seed "$SEED" "${TASK[@]}" \
  "${TEACHER[@]}" --no-reflection --out "$OUT/traces_plain.jsonl"

# micro-batches of 8 (the step's sequences sorted by length): the same gradient as one batch of 32 (float32: 7e-7
# apart), 15-18% of the computed tokens padding instead of 47-50%: 1.92x faster at 1 thread, 1.58x at 2
# (bench/sft_micro.py, docs/performance.md); not a setting
SFT=(--init "$MODEL" --steps "$SFT_STEPS" --batch "$SFT_BATCH" --micro 8 --lr "$SFT_LR" --warmup 20
     --dtype bfloat16 --seed "$SEED" --val "$OUT/val.jsonl" --eval-items "$SFT_EVAL_ITEMS"
     --eval-every "$SFT_EVAL_EVERY" --save-every 50 --max-new-tokens "$SFT_MAX_NEW" --skip-bad)
step "SFT on reflection traces (J1-SFT)"
train "$OUT/j1_sft.pt" train_sft.py --data "$OUT/traces_j1.jsonl" "${SFT[@]}"
stop_here j1_sft
if [[ " $SFT_ROWS " == *" plain_sft "* ]]; then
  step "SFT on plain traces (the ordinary judge)"
  train "$OUT/plain_sft.pt" train_sft.py --data "$OUT/traces_plain.jsonl" "${SFT[@]}"
fi
stop_here sft

RL=(--algo reinforce_pp --data "$OUT/rl_pairs.jsonl" --val "$OUT/val.jsonl" --steps "$RL_STEPS"
    --prompts "$RL_PROMPTS" --group "$RL_GROUP" --lr "$RL_LR" --max-new-tokens "$MAX_NEW" --seed "$SEED"
    --dtype "$RL_DTYPE"
    --eval-every "$RL_EVAL_EVERY" --eval-items "$RL_EVAL_ITEMS" --eval-budget 3 --save-every 10
    --patience "$RL_PATIENCE" --min-improvement "$RL_MIN_IMPROVEMENT" --max-hours "$RL_MAX_HOURS" --keep-best)
declare -A RL_FLAGS=([j1_rpp]="" [j1_rpp_budget]="--budget $RL_BUDGETS" [plain_rpp]="")
for row in $RL_ROWS; do
  step "RL: $row (REINFORCE++ from ${START[$row]} ${RL_FLAGS[$row]})"
  # shellcheck disable=SC2086  # the flags are words
  train "$OUT/$row.pt" train_grpo.py --ckpt "$OUT/${START[$row]}.pt" "${RL[@]}" ${RL_FLAGS[$row]}
  stop_here "$row"
done

step "evaluation on $TEST_N test pairs: budgets 0-3 greedy, then K sampled traces at budget 0 (K odd, matched)"
declare -A CKPT=([plain_sft]=plain_sft.pt [j1_sft]=j1_sft.pt [j1_rpp]=j1_rpp.best.pt
                 [j1_rpp_budget]=j1_rpp_budget.best.pt [plain_rpp]=plain_rpp.best.pt)
for row in $SFT_ROWS $RL_ROWS; do
  judged "$OUT/judge_$row.jsonl" --ckpt "$OUT/${CKPT[$row]}" --data "$OUT/test.jsonl" --budgets 0,1,2,3 \
    --max-new-tokens "$MAX_NEW"
  K=$(python scripts/results.py --matched-k "$OUT/judge_$row.jsonl" --odd)
  judged "$OUT/parallel_$row.jsonl" --ckpt "$OUT/${CKPT[$row]}" --data "$OUT/test.jsonl" --budget 0 \
    --samples "$K" --temperature "$PAR_TEMPERATURE" --seed "$SEED" --max-new-tokens "$MAX_NEW"
done

step "gzip the judgments for committing"
for f in "$OUT"/judge_*.jsonl "$OUT"/parallel_*.jsonl; do
  [ -e "$f.gz" ] || { gzip -9 -n -c "$f" > "$f.gz.tmp" && mv "$f.gz.tmp" "$f.gz"; }
done
ls -l "$OUT"/*.jsonl.gz
python scripts/results.py "$OUT" --plot "$OUT/scaling.png" --rl-plot "$OUT/rl.png" --force | tee "$OUT/results.md"
cat "$OUT/times.log"
