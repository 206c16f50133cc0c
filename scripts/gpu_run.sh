#!/usr/bin/env bash
# The lent GPU's run (docs/performance.md, "A GPU run"): on the GPU machine, from the repo root, with gpu_payload/
# (scripts/gpu_payload.sh) carried. Everything it writes for you lands in one folder: --out DIR, else $OUT (the
# device tool's), else runs/gpu_out.
#   scripts/gpu_run.sh [--dry-run] [--out DIR] [STAGE...]    STAGE: tests bench train ensemble (default: all four)
# - tests:    the CUDA tests (they skip themselves without CUDA; the repo has no cuda marker) and test_distributed's
#             real-data ones, on the payload's HAM10000.
# - bench:    benchmarks/train_throughput.py: ResNet50 full fine-tune at 224, channels_last, none/bf16/fp16, the real
#             pipeline against a synthetic on-device feed, batch 256.
# - train:    the default recipe (scripts/train_shipped.sh's two EfficientNet-Lite0 runs, seeds 42 and 7) at full
#             length: EPOCHS (30) with warm-up, EMA and random crops, bf16, on the shipped split.
# - ensemble: `dermcli ensemble --tta dihedral` of the two, and its validation eval (figures; the test split stays
#             for the one evaluation of a model chosen to ship).
# A call must end inside ~9 minutes (10 per command, 15 in all): a stage starts only if its minimum fits in what is
# left of BUDGET_S (540 s), and every command gets SIGINT (as Ctrl-C: train keeps last.pt) in time to collect the
# outputs. The work stays in WORK (runs/gpu, ignored), so a later call on the still-warm machine resumes training and
# skips finished runs. Exit 0: all asked stages ran; 1: one failed; 2: bad usage; 3: one was stopped or skipped for time.
# --dry-run (or DRY_RUN=1): the same steps on the CPU at tiny sizes (2 epochs, 64 px, batch 4, fp32), for tests/test_gpu_run.py.
# Env: BUDGET_S, EPOCHS, SEEDS ("42 7"), PAYLOAD (gpu_payload), WORK, PYTHON (python3: the GPU image's), TESTS (pytest args).
set -euo pipefail
cd "$(dirname "$0")/.."
die() { echo "gpu_run: $*" >&2; exit 2; }

DRY_RUN=${DRY_RUN:-0} OUT_DIR="" STAGES=()
while [ $# -gt 0 ]; do
  case $1 in
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    --dry-run) DRY_RUN=1 ;;
    --out) [ $# -ge 2 ] || die "--out needs a folder"; OUT_DIR=$2; shift ;;
    tests | bench | train | ensemble) STAGES+=("$1") ;;
    *) die "unknown stage or option '$1' (stages: tests bench train ensemble; options: --dry-run, --out DIR, --help)" ;;
  esac
  shift
done
[ ${#STAGES[@]} -gt 0 ] || STAGES=(tests bench train ensemble)
OUT_DIR=${OUT_DIR:-${OUT:-runs/gpu_out}}
PY=${PYTHON:-python3}
PAYLOAD=${PAYLOAD:-gpu_payload}
DATA=$PAYLOAD/ham10000
INIT=$PAYLOAD/tf_efficientnet_lite0_imagenet_timm.pt
SEEDS=${SEEDS:-42 7}
BUDGET_S=${BUDGET_S:-540}
RESERVE_S=30  # kept back for collecting the outputs
[[ $BUDGET_S =~ ^[0-9]+$ ]] || die "BUDGET_S=$BUDGET_S is not a number of seconds"
[ -f "$DATA/HAM10000_metadata.csv" ] || die "$DATA: no HAM10000 (make it with scripts/gpu_payload.sh and carry $PAYLOAD)"
if [ "$DRY_RUN" = 1 ]; then
  # 2 epochs: --lr-warmup 1 needs more than one. No autocast: a CPU without bf16 units emulates it at twice the time
  # (tests/test_devices.py trains with bf16 on the CPU); the bench keeps bf16, as its rows are what summary.json reads.
  WORK=${WORK:-runs/gpu_dry} DEVICE=cpu AMP=none EPOCHS=${EPOCHS:-2} BATCH=4 SIZE=64 EVAL_BATCH=8
  BENCH=(--device cpu --resnet50-images 4 --resnet50-batch 2 --input-size 32 --amps bf16 --feeds real,synthetic)
  TESTS=${TESTS:-tests/test_devices.py -k amp_defaults}
else
  WORK=${WORK:-runs/gpu} DEVICE=cuda AMP=bf16 EPOCHS=${EPOCHS:-30} BATCH=48 SIZE=0 EVAL_BATCH=256
  BENCH=(--device cuda --resnet50-batch 256)  # one H200 saturates only at large batches; the card's 32 is launch-bound
  TESTS=${TESTS:-tests/test_devices.py tests/test_distributed.py}
fi
# scripts/train_shipped.sh's Lite0 recipe, run longer (docs/shipped-models.md: 20-30 epochs); patience 12, as an EMA's
# validation score lags the weights. --input-size 0 is the model's own 224.
RECIPE=(--model timm/tf_efficientnet_lite0 --init "$INIT" --data "$DATA" --epochs "$EPOCHS" --lr 3e-4 --weight-decay 0.01
  --scheduler cosine --lr-warmup 1 --ema 0.998 --crop-scale 0.5 --patience 12 --class-weights sqrt --label-smoothing 0.1
  --batch-size "$BATCH" --input-size "$SIZE" --device "$DEVICE" --amp "$AMP" --no-tensorboard)
[ ! -f "$PAYLOAD/split.csv" ] || RECIPE+=(--split-file "$PAYLOAD/split.csv")

if [ "$DRY_RUN" != 1 ] && ! "$PY" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())' 2> /dev/null; then
  die "no CUDA device for $PY here (on a CPU: --dry-run)"
fi
mkdir -p "$OUT_DIR" "$WORK"
case "$(realpath "$OUT_DIR")/" in "$(realpath "$WORK")"/*) die "--out $OUT_DIR is inside WORK=$WORK: it would be collected into itself" ;; esac
rm -f "$OUT_DIR"/gpu_run.log "$OUT_DIR"/summary.json "$OUT_DIR"/results.tar*
LOG=$OUT_DIR/gpu_run.log  # written as it goes, so a call killed at its limit still brings it back
exec > >(tee -a "$LOG") 2>&1
TEE=$!
# dermcli is not installed there: run from the repo; the real-data tests read the payload's HAM10000
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 DERMCLI_TEST_DATA=$(realpath "$DATA")
left() { echo $((BUDGET_S - SECONDS)); }
limited() {  # CMD...: SIGINT when the budget (less the reserve) runs out, SIGKILL 20 s later
  local t=$(($(left) - RESERVE_S))
  [ "$t" -gt 0 ] || { echo "no time left for: $*"; return 124; }
  timeout -s INT -k 20 "$t" "$@"
}

stage_tests() {
  "$PY" -c 'import pytest' 2>/dev/null || { echo "pytest is not installed for $PY"; return 1; }
  local args
  read -ra args <<< "$TESTS"
  mkdir -p "$WORK/tests"
  limited "$PY" -m pytest -p no:cacheprovider -rs --junitxml="$WORK/tests/junit.xml" "${args[@]}"
}

stage_bench() {
  mkdir -p "$WORK/bench"
  limited "$PY" benchmarks/train_throughput.py --data "$DATA" --models resnet50 "${BENCH[@]}" --json "$WORK/bench/train_throughput.json"
}

stage_train() {
  [ -f "$INIT" ] || { echo "$INIT: missing (scripts/gpu_payload.sh puts it in the payload)"; return 1; }
  local seed run
  for seed in $SEEDS; do
    run=$WORK/lite0_s$seed
    if [ -f "$run.done" ]; then
      echo "lite0_s$seed: finished in an earlier call"
    elif [ -f "$run/last.pt" ]; then  # stopped by an earlier call's budget: go on from its last finished epoch
      limited "$PY" -m dermcli train --resume "$run" --device "$DEVICE"
    else
      limited "$PY" -m dermcli train "${RECIPE[@]}" --out "$run" --seed "$seed" --overwrite
    fi
    touch "$run.done"
  done
}

stage_ensemble() {
  local seed members=()
  for seed in $SEEDS; do
    [ -f "$WORK/lite0_s$seed.done" ] || { echo "lite0_s$seed has not finished training: run the train stage first"; return 1; }
    members+=("$WORK/lite0_s$seed/best.pt")
  done
  rm -rf "$WORK/lite0_ensemble.pt" "$WORK/lite0_ensemble"
  limited "$PY" -m dermcli ensemble "${members[@]}" --data "$DATA" --out "$WORK/lite0_ensemble.pt" --tta dihedral
  limited "$PY" -m dermcli eval --weights "$WORK/lite0_ensemble.pt" --data "$DATA" --split val --out "$WORK/lite0_ensemble/val" \
    --engine torch --device "$DEVICE" --batch-size "$EVAL_BATCH"
}

declare -A MIN_S=([tests]=60 [bench]=60 [train]=120 [ensemble]=90)  # what each needs to do anything useful
STATUS=$WORK/stages.tsv
: > "$STATUS"
echo "gpu_run: stages ${STAGES[*]}, budget ${BUDGET_S} s, dry run ${DRY_RUN}, out $OUT_DIR, work $WORK, $(date -u +%FT%TZ)"
cat "$PAYLOAD/PAYLOAD.txt" 2>/dev/null || echo "($PAYLOAD has no PAYLOAD.txt)"
command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PY" -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.cuda.is_available())'

worst=0  # the exit code: 1 (a stage failed) outranks 3 (stopped or skipped for time)
mark() { if [ "$1" = failed ]; then worst=1; elif [ $worst -eq 0 ]; then worst=3; fi; }
for stage in "${STAGES[@]}"; do
  if [ "$(left)" -lt $((MIN_S[$stage] + RESERVE_S)) ]; then
    echo "== $stage: skipped, $(left) s left of the budget and it needs ${MIN_S[$stage]}: run \`scripts/gpu_run.sh $stage\` next"
    printf '%s\tskipped\t0\n' "$stage" >> "$STATUS"
    mark skipped
    continue
  fi
  echo "== $stage: $(left) s left, $(date -u +%T)"
  start=$SECONDS
  set +e
  (set -e; "stage_$stage")  # a subshell, so that set -e holds inside the stage and its failure stops it alone
  rc=$?
  set -e
  if [ $rc -eq 0 ]; then state=ok
  elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then state=out-of-time  # timeout's codes: SIGINT sent, or SIGKILL after it
    echo "== $stage: stopped by the time budget; run \`scripts/gpu_run.sh $stage\` again on the warm machine to go on"
  else state=failed
  fi
  [ $state = ok ] || mark $state
  echo "== $stage: $state (exit $rc) in $((SECONDS - start)) s"
  printf '%s\t%s\t%d\n' "$stage" "$state" $((SECONDS - start)) >> "$STATUS"
done

# What comes back from $OUT: at most 8 files of 16 MiB, 64 MiB in all, 2 folders deep, names of [A-Za-z0-9._-]. So:
# gpu_run.log, summary.json, and results.tar, split into results.tar.part00, 01, ... of 15 MiB when it is larger
# (`cat results.tar.part* | tar x` puts it together): every small output in WORK, plus the ensemble checkpoint, whose
# members are inside it (scripts/unpack_ensemble.py), or, without one, the members' best.pt. last.pt (55 MB each:
# optimiser state) stays on the machine for a resume. At most 56 MiB of tar: 4 parts, with room for the log.
echo "== collect: $(left) s left"
cap=$((56 * 1048576))
list=$WORK/collect.txt
(cd "$WORK" && find . -type f ! -name '*.pt' ! -name '*.npy' ! -name collect.txt | sort) > "$list"
if [ -f "$WORK/lite0_ensemble.pt" ]; then big=(lite0_ensemble.pt); else big=(); for s in $SEEDS; do big+=("lite0_s$s/best.pt"); done; fi
used=$( (cd "$WORK" && xargs -d '\n' -r stat -c %s < "$list") | awk '{s += $1 + 1024} END {print s + 10240}')
for f in "${big[@]}"; do
  [ -f "$WORK/$f" ] || continue
  size=$(stat -c %s "$WORK/$f")
  if [ $((used + size + 1024)) -le $cap ]; then echo "./$f" >> "$list"; used=$((used + size + 1024))
  else echo "collect: $f ($((size / 1048576)) MiB) does not fit what comes back; it stays in $WORK"; fi
done
tar -cf "$OUT_DIR/results.tar" -C "$WORK" -T "$list"
if [ "$(stat -c %s "$OUT_DIR/results.tar")" -gt $((16 * 1048576)) ]; then
  split -b 15M -d -a 2 "$OUT_DIR/results.tar" "$OUT_DIR/results.tar.part" && rm "$OUT_DIR/results.tar"
fi
"$PY" - "$STATUS" "$WORK/bench/train_throughput.json" "$OUT_DIR/summary.json" "$DRY_RUN" "$list" <<'EOF'
import json, sys
from pathlib import Path
status, bench, out, dry, listed = sys.argv[1:]
stages = [dict(zip(("stage", "status", "seconds"), line.split("\t"))) for line in Path(status).read_text().splitlines()]
summary = {"dry_run": dry == "1", "stages": [{**s, "seconds": int(s["seconds"])} for s in stages],
           "results_tar": sorted(line[2:] for line in Path(listed).read_text().splitlines())}
if Path(bench).is_file():  # the bars (docs/performance.md): >= 3,000 img/s bf16 + channels_last, real within 10% of synthetic
    b = json.loads(Path(bench).read_text())
    speed = {(r["model"], r["amp"], r["feed"]): r["img_per_s"] for r in b["rows"]}
    real, synthetic = speed.get(("resnet50", "bf16", "real")), speed.get(("resnet50", "bf16", "synthetic"))
    summary["bench"] = {"device": b["device"], "resnet50_bf16_real_img_per_s": real, "resnet50_bf16_synthetic_img_per_s": synthetic,
                        "real_over_synthetic": real / synthetic if real and synthetic else None}
    if dry != "1" and real and synthetic:  # a CPU's figures say nothing about these bars
        summary["bench"]["bars_met"] = {"real_3000_img_per_s": real >= 3000, "synthetic_3000_img_per_s": synthetic >= 3000,
                                        "real_within_10pct_of_synthetic": real >= 0.9 * synthetic}
Path(out).write_text(json.dumps(summary, indent=2) + "\n")
print(json.dumps(summary))
EOF
ls -l "$OUT_DIR"
exec > /dev/null 2>&1  # let tee write the log's end before the call returns
wait "$TEE" || true
exit $worst
