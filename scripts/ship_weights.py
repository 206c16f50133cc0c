"""Copy a finished run's best.pt (or an ensemble file) into weights/ (optionally in fp16) with the run files its card needs.

    python scripts/ship_weights.py RUN_DIR|ENSEMBLE.pt weights/NAME [--half]

writes weights/NAME.pt and weights/NAME/{split.csv,history.csv,config.json} (an ensemble has only its split.csv). With --half it also checks
the fp16 file against the run's fp32 best.pt on every validation image of the run (never test) and
writes weights/NAME/fp16_check.json; it exits 1 if probabilities differ by more than 1e-3.
"""

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

from dermcli.core.files import write_text
from dermcli.models.checkpoint import read_checkpoint, save_checkpoint
from dermcli.models.loading import build_model

FP16_TOLERANCE = 1e-3


def validation_images(run: Path, meta: dict) -> np.ndarray:
    from dermcli.data.cache import cached_images
    from dermcli.data.dataset import load_dataset
    from dermcli.data.split import load_split, select

    rows = select(load_dataset(Path(meta["config"]["data"])), load_split(run / "split.csv"), "val")
    return cached_images(rows["path"].tolist(), meta["input_size"])


def fp16_check(reference: Path, shipped: Path, images: np.ndarray) -> dict:
    """Largest and mean absolute difference of the two files' probabilities (temperature applied) on `images`."""
    from dermcli.inference.runners import TorchRunner
    from dermcli.models.outputs import probabilities

    probs = [probabilities(runner.logits(images), runner.meta["temperature"]) for runner in map(TorchRunner.load, (reference, shipped))]
    difference = np.abs(probs[0] - probs[1])
    return {"images": len(images), "split": "val", "max_abs_difference": float(difference.max()),
            "mean_abs_difference": float(difference.mean()), "tolerance": FP16_TOLERANCE}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("target", type=Path, help="weights/NAME, without .pt")
    parser.add_argument("--half", action="store_true", help="store floating tensors in fp16 (BatchNorm statistics stay fp32)")
    args = parser.parse_args()
    source, run = (args.run, args.run.with_suffix("")) if args.run.is_file() else (args.run / "best.pt", args.run)
    best = read_checkpoint(source)
    model = build_model(best["meta"], best["state_dict"])
    shipped = args.target.with_suffix(".pt")
    # fp16 goes to a trial file first: weights/ only ever holds a copy that passed its check
    written = shipped.with_suffix(".fp16-trial.pt") if args.half else shipped
    save_checkpoint(written, model, best["meta"], half=args.half, ood=best.get("ood"))
    args.target.mkdir(parents=True, exist_ok=True)
    for name in ("split.csv", "history.csv", "config.json"):
        if name == "split.csv" or (run / name).is_file():
            shutil.copyfile(run / name, args.target / name)
    if args.half:
        check = fp16_check(source, written, validation_images(run, best["meta"]))
        print(f"fp16 vs fp32 on {check['images']} val images: max |Δp| {check['max_abs_difference']:.2e}, mean {check['mean_abs_difference']:.2e}")
        if check["max_abs_difference"] > FP16_TOLERANCE:
            written.unlink()
            sys.exit(f"fp16 copy differs by more than {FP16_TOLERANCE}: not shipped (ship it in fp32, without --half)")
        written.replace(shipped)
        write_text(args.target / "fp16_check.json", json.dumps(check, indent=2) + "\n")


if __name__ == "__main__":
    main()
