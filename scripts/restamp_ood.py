"""Move a shipped checkpoint's unusual-image threshold to another pass rate, without retraining:

    python scripts/restamp_ood.py weights/NAME.pt --pass-rate 0.99 [--data ../shared/data/ham10000]

The threshold becomes that quantile of the distances of the run's own validation images (never test), as
training fits it (models.unusual.pass_threshold); the statistics themselves stay. It rewrites the checkpoint's
metadata, restamps the .onnx beside it (same graph, new metadata and digest), and, where weights/NAME/eval
exists, its eval_info.json (threshold and flagged share from its predictions.csv) and re-renders its reports
and card from predictions.csv, so no split is evaluated again.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from dermcli.core.files import write_text
from dermcli.data.cache import cached_images
from dermcli.data.label_set import chosen_table
from dermcli.data.split import load_split, select
from dermcli.evaluation.evaluate import resolve_split_file
from dermcli.inference.export import restamp_onnx
from dermcli.inference.loading import load_runner
from dermcli.models.checkpoint import read_checkpoint, write_payload
from dermcli.models.unusual import pass_threshold


def val_distances(weights: Path, data: Path) -> np.ndarray:
    runner = load_runner(weights, "onnx")
    rows = select(chosen_table({**runner.meta.get("config", {}), "data": str(data)}), load_split(resolve_split_file(weights, None)), "val")
    distances = runner.outputs(cached_images(rows["path"].tolist(), runner.meta["input_size"]))[1]
    if distances is None:
        raise SystemExit(f"{weights}: no unusual-image statistics to set a threshold on (scripts/fit_ood.py fits them)")
    return distances


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", type=Path)
    parser.add_argument("--pass-rate", type=float, required=True)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/ham10000"))
    args = parser.parse_args()
    threshold = pass_threshold(val_distances(args.weights, args.data), args.pass_rate)
    payload = read_checkpoint(args.weights)
    write_payload(args.weights, {**payload, "meta": {**payload["meta"], "ood_threshold": threshold, "ood_pass_rate": args.pass_rate}})
    if args.weights.with_suffix(".onnx").is_file():
        restamp_onnx(args.weights.with_suffix(".onnx"), args.weights)
    print(f"{args.weights}: unusual-image distance above {threshold:.4g} ({args.pass_rate:.1%} of val below)")
    folder = args.weights.with_suffix("") / "eval"
    if (folder / "eval_info.json").is_file():
        info = json.loads((folder / "eval_info.json").read_text())
        scores = pd.read_csv(folder / "predictions.csv")["ood_score"].astype(float).to_numpy()
        info.update(ood_threshold=threshold, ood_pass_rate=args.pass_rate, unusual_fraction=float(np.mean(scores > threshold)))
        write_text(folder / "eval_info.json", json.dumps(info, indent=2) + "\n")
        subprocess.run([sys.executable, "-m", "dermcli", "report", str(folder), "--card"], check=True)


if __name__ == "__main__":
    main()
