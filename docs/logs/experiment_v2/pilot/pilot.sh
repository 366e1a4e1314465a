# The v2 pilot, as run (from the repository root, in the background: nohup bash ... > pilot.log)
set -euo pipefail
O=runs/pilot_v2
mkdir -p $O
T=(--wrong-kinds carry,digit --seed 0)
python data_gen.py pairs --n 300 --split val "${T[@]}" --out $O/val.jsonl --force
python data_gen.py traces --n 10000 --split train --teacher-version v2 "${T[@]}" --out $O/traces_j1.jsonl --force
date
timeout 900 python train_sft.py --data $O/traces_j1.jsonl --init tiny --steps 120 --batch 32 --micro 32 --lr 1e-3 \
  --warmup 10 --dtype bfloat16 --seed 0 --val $O/val.jsonl --eval-items 50 --eval-every 60 --save-every 20 \
  --max-new-tokens 700 --skip-bad --out $O/j1_sft.pt --force
date
# then the step-60 checkpoint on the first 60 validation pairs, greedy, budgets 0 and 1:
python judge.py --ckpt $O/j1_sft.pt --data $O/val.jsonl --limit 60 --budgets 0,1 --max-new-tokens 700 \
  --batch-size 64 --examples 0 --out $O/judge_val60.jsonl
