#!/usr/bin/env bash
# Issue 24's longer run and the validation table that decides whether it joins the default (docs/shipped-models.md,
# "Longer training at 160 px"): Lite0 trained 18 epochs at 160 px and 10 epochs at 192 px on random resized crops,
# with EMA and LR warm-up, on the default's split; then every subset of these and the default's two members at
# test sizes 224, 192 and 160.
# Validation only: the test split is not read.   scripts/default_candidates.sh [HAM10000_DIR]
# Then EfficientNet-Lite2 for 6 epochs at 192 px on the shipped members' recipe, its table with them, and the paired
# contrasts (lesion-level intervals, class-prior decisions) that `docs/shipped-models.md` reads.
# Wall time on 2 CPU cores: about 50 + 31 + 36 min of training, then about 30 + 30 min of validation views.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data/ham10000}
LITE0=${LITE0:-../shared/weights/tf_efficientnet_lite0_imagenet_timm.pt}
LITE2=${LITE2:-../shared/weights/tf_efficientnet_lite2_imagenet_timm.pt}
RUNS=${RUNS:-runs}

dermcli train --model timm/tf_efficientnet_lite0 --init "$LITE0" --data "$DATA" --out "$RUNS/l0_160" --epochs 18 --input-size 160 \
  --crop-scale 0.5 --lr 3e-4 --weight-decay 0.01 --scheduler cosine --lr-warmup 1 --ema 0.998 --class-weights sqrt \
  --label-smoothing 0.1 --batch-size 48 --patience 18 --seed 11 --split-file weights/lite0_ensemble_ham10000_7class/split.csv
dermcli train --model timm/tf_efficientnet_lite0 --init "$LITE0" --data "$DATA" --out "$RUNS/l0_192" --epochs 10 --input-size 192 \
  --crop-scale 0.5 --lr 3e-4 --weight-decay 0.01 --scheduler cosine --lr-warmup 1 --ema 0.998 --class-weights sqrt \
  --label-smoothing 0.1 --batch-size 48 --patience 10 --seed 12 --split-file weights/lite0_ensemble_ham10000_7class/split.csv
python scripts/unpack_ensemble.py weights/lite0_ensemble_ham10000_7class.pt "$RUNS/members"
python benchmarks/ensembles.py "$RUNS/members/member_1/best.pt" "$RUNS/members/member_2/best.pt" "$RUNS/l0_160/best.pt" "$RUNS/l0_192/best.pt" \
  --sizes 224,192,160 --tta dihedral --data "$DATA" --views "$RUNS/val_views" --json benchmarks/ensembles.json
dermcli train --model timm/tf_efficientnet_lite2 --init "$LITE2" --data "$DATA" --out "$RUNS/l2_192" --epochs 6 --input-size 192 \
  --lr 3e-4 --weight-decay 0.01 --scheduler cosine --class-weights sqrt --label-smoothing 0.1 --batch-size 48 --patience 6 --seed 21 \
  --split-file weights/lite0_ensemble_ham10000_7class/split.csv
PAIR="$RUNS/members/member_1/best.pt,$RUNS/members/member_2/best.pt"
python benchmarks/ensembles.py "$RUNS/members/member_1/best.pt" "$RUNS/members/member_2/best.pt" "$RUNS/l2_192/best.pt" \
  --sizes 224,192 --tta dihedral --data "$DATA" --views "$RUNS/val_views" --json benchmarks/ensembles_lite2.json
python benchmarks/contrasts.py "224:$PAIR" "192:$RUNS/l2_192/best.pt" "224:$PAIR,$RUNS/l2_192/best.pt" --powers 0,0.25,0.5,0.75 \
  --tta dihedral --data "$DATA" --views "$RUNS/val_views" --json benchmarks/contrasts.json
