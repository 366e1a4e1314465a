# Stage helpers of scripts/reproduce.sh and scripts/reproduce_v2.sh (sourced; $OUT is the run folder). A finished
# stage is not redone: an interrupted training resumes from its checkpoint, an interrupted judge.py from its .partial
# file, and each stage that runs appends "stage seconds" to $OUT/times.log.

step() { echo; echo "=== $(date '+%F %T') $*"; }
timed() {  # timed NAME COMMAND...: run COMMAND and append its wall-clock seconds to $OUT/times.log
  local name=$1 t0; shift
  t0=$(date +%s)
  "$@"
  echo "$name $(( $(date +%s) - t0 ))" >> "$OUT/times.log"
}
once() {  # once OUTPUT COMMAND...: run COMMAND unless OUTPUT exists (every output is written atomically)
  local out=$1; shift
  if [ -e "$out" ]; then echo "(have $out)"; return; fi
  timed "$(basename "$out")" "$@"
}
train() {  # train OUTPUT SCRIPT ARGS...: a finished run is kept; an interrupted one resumes from its checkpoint
  local out=$1 script=$2; shift 2
  if [ -e "$out.done" ]; then echo "(have $out)"; return; fi
  if [ -e "$out" ]; then timed "$(basename "$out")" python "$script" "$@" --out "$out" --resume "$out"
  else  # a run killed before its first checkpoint left only a log (and files of its step 0), nothing kept: start over
    local fresh=(); [ -e "${out%.pt}.log.jsonl" ] && fresh=(--force)
    timed "$(basename "$out")" python "$script" "$@" --out "$out" "${fresh[@]}"; fi
  touch "$out.done"
}
judged() {  # judged OUTPUT ARGS...: judge.py unless OUTPUT exists; an interrupted run continues from OUTPUT.partial
  local out=$1; shift
  if [ -e "$out" ]; then echo "(have $out)"; return; fi
  local resume=(); [ -e "$out.partial" ] && resume=(--resume)
  # 256 rows at once: the tiny model's KV cache is ~2 MB a row, and on 2 cores wide batches decode faster
  timed "$(basename "$out")" python judge.py "$@" --batch-size 256 --examples 0 --out "$out" "${resume[@]}"
}
