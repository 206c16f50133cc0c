#!/usr/bin/env bash
# Reproduce everything in weights/ from scratch on CPU: train both shipped models on HAM10000, copy them
# into weights/, evaluate each on the lesion-level test split of its own run, and write the model cards.
#   scripts/train_shipped.sh [HAM10000_DIR]   (default ../shared/data/ham10000)
# Wall time on 2 CPU cores: see README ("Shipped models").
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data/ham10000}
INIT=${INIT:-../shared/weights/resnet50_imagenet_keras_stem-layer3.pt}
RUNS=${RUNS:-runs/shipped}

dermcli train --model cnn --data "$DATA" --out "$RUNS/cnn" --epochs 40 --batch-size 128 --lr 1e-3 \
  --scheduler cosine --patience 12 --label-smoothing 0.1 --class-weights none --augment dihedral --overwrite
# ImageNet weights for the stem and layer1-3 only (Keras/Caffe: BGR mean subtraction, v1 strides); layer4 + head learn.
# --fp16-frozen: the frozen layers are fp16-exact from the start, so the fp16 file below differs only in layer4 + head.
dermcli train --model resnet50 --data "$DATA" --out "$RUNS/r50" --init "$INIT" --preprocessing caffe --strides v1 \
  --freeze layer3 --fp16-frozen --epochs 10 --batch-size 32 --lr 3e-4 --weight-decay 0.01 --scheduler cosine --patience 7 --overwrite

python scripts/ship_weights.py "$RUNS/cnn" weights/cnn_ham10000_7class
python scripts/ship_weights.py "$RUNS/r50" weights/resnet50_ham10000_binary --half  # checks fp16 vs fp32 on val

for name in cnn_ham10000_7class resnet50_ham10000_binary; do
  dermcli eval --weights "weights/$name.pt" --data "$DATA" --split test --split-file "weights/$name/split.csv" \
    --out "weights/$name/eval" --engine torch
  dermcli report "weights/$name/eval" --card
done
# The README's paired comparison of the two (same test split: both runs use split seed 42).
dermcli compare weights/cnn_ham10000_7class/eval weights/resnet50_ham10000_binary/eval --out weights/compare
dermcli predict examples/ --model cnn --out examples/predictions_cnn.csv --engine torch
dermcli predict examples/ --model resnet50 --out examples/predictions_resnet50.csv --engine torch
# The README's results table:
python -c "from pathlib import Path; from dermcli.card import results_table; print(results_table([Path('weights/cnn_ham10000_7class/eval'), Path('weights/resnet50_ham10000_binary/eval')]))"
# The README's explanation overlays and unusual-image figures (the OOD statistics came with training):
dermcli explain examples/ISIC_0026531.jpg --model cnn --out docs/explain/cnn
dermcli explain examples/ISIC_0026531.jpg --model resnet50 --out docs/explain/resnet50
python benchmarks/ood.py weights/cnn_ham10000_7class.pt weights/resnet50_ham10000_binary.pt --data "$DATA" --json benchmarks/ood.json
