"""FixRes on validation: a checkpoint's validation figures at several test sizes, so the size it is shipped at is
chosen on validation (a model trained on random resized crops sees objects larger than whole images show them;
testing at a larger size matches the two). Validation only: the test split is never read here.

    python benchmarks/fixres.py runs/l0_160/best.pt --sizes 160,192,224 --data ../shared/data/ham10000 --json benchmarks/fixres.json

Each size runs the model on the validation images resized to it, with the model's own temperature and --tta views.
"""

import argparse
import json
from pathlib import Path

import numpy as np

from dermcli.core.labels import malignant_score, malignant_targets, model_targets
from dermcli.data.cache import cached_images
from dermcli.data.label_set import chosen_table
from dermcli.data.split import load_split, select
from dermcli.evaluation.evaluate import resolve_split_file
from dermcli.evaluation.metrics import multiclass_summary, roc_auc
from dermcli.inference.runners import TorchRunner
from dermcli.inference.tta import view_outputs
from dermcli.models.outputs import probabilities

FIGURES = ("accuracy", "balanced_accuracy", "macro_f1", "macro_auc", "malignant_auc")


def figures_at(runner: TorchRunner, val, size: int, tta: str) -> dict:
    meta = {**runner.meta, "input_size": size}
    views = view_outputs(TorchRunner(runner.model, meta), cached_images(val["path"].tolist(), size), tta)[0]
    probs = np.mean([probabilities(v, meta["temperature"]) for v in views], axis=0)
    y = np.array(model_targets(val["dx"], meta))
    summary = multiclass_summary(y, probs)
    return {**{k: summary[k] for k in FIGURES[:4]}, "malignant_auc": roc_auc(malignant_targets(y, meta), malignant_score(probs, meta))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("weights", type=Path, nargs="+")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/ham10000"))
    parser.add_argument("--sizes", default="160,192,224", help="Test sizes, comma-separated.")
    parser.add_argument("--tta", default="none", help="none, flips or dihedral.")
    parser.add_argument("--json", type=Path, help="Also write the rows here.")
    args = parser.parse_args()
    rows = []
    for weights in args.weights:
        runner = TorchRunner.load(weights)
        config = runner.meta.get("config", {})
        val = select(chosen_table({**config, "data": str(args.data)}), load_split(resolve_split_file(weights, None)), "val")
        for size in map(int, args.sizes.split(",")):
            row = {"weights": str(weights), "trained_at": runner.meta["input_size"], "size": size, "tta": args.tta,
                   **figures_at(runner, val, size, args.tta)}
            rows.append(row)
            print(f"{weights} (trained at {row['trained_at']}) at {size}: " + ", ".join(f"{k} {row[k]:.4f}" for k in FIGURES), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
