#!/usr/bin/env bash
# Issue 24's second round of distillation settings for the card's 28x28 CNN (docs/shipped-models.md, "The distilled
# CNN"): a heavier teacher share, a hotter temperature, balanced class weights, and twice the epochs, each from the
# shipped default as teacher on the shipped CNN's split, each scored on validation by its best epoch.
# Validation only: the test split is not read.   scripts/distill_candidates.sh [HAM10000_DIR]
# Wall time on 2 CPU cores, as measured: 21 min for the teacher's logits (cached for the later runs), 9-10 min a 40-epoch
# run, 23 min the 80-epoch one.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data/ham10000}
RUNS=${RUNS:-runs}
SPLIT=weights/cnn_ham10000_7class/split.csv

candidate() {
  local name=$1; shift
  dermcli train --model cnn --data "$DATA" --out "$RUNS/$name" --epochs 40 --batch-size 128 --lr 1e-3 --scheduler cosine \
    --patience 40 --augment dihedral --ema 0.998 --label-smoothing 0.1 --split-file "$SPLIT" \
    --teacher weights/lite0_ensemble_ham10000_7class.pt --overwrite "$@"
  dermcli eval --weights "$RUNS/$name/best.pt" --data "$DATA" --split val --split-file "$SPLIT" --out "$RUNS/$name/val" --engine torch
}
candidate kd_w09_t4 --class-weights sqrt --distill-weight 0.9 --distill-temperature 4
candidate kd_w05_t8 --class-weights sqrt --distill-weight 0.5 --distill-temperature 8
candidate kd_w07_t4_bal --class-weights balanced --distill-weight 0.7 --distill-temperature 4
candidate kd_w05_t4_e80 --class-weights sqrt --distill-weight 0.5 --distill-temperature 4 --epochs 80 --patience 80
