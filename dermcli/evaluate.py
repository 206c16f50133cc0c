"""Run a checkpoint over a split (or a whole external set) and save predictions.csv + the reports."""

import json
from pathlib import Path

import numpy as np
import pandas as pd

from dermcli.data.dataset import METADATA, load_dataset
from dermcli.data.cache import cached_images
from dermcli.data.split import load_split, select
from dermcli.errors import DermcliError
from dermcli.io import ensure_writable_dir, write_text
from dermcli.labels import task_targets
from dermcli.options import check

PREDICTIONS = "predictions.csv"
EVAL_INFO = "eval_info.json"


def resolve_split_file(weights: Path, split_file: Path | None) -> Path:
    """--split-file, else the run's split.csv: beside the weights (a run folder), or in the folder named
    after the weights file (how shipped weights keep their run files: weights/NAME.pt, weights/NAME/split.csv)."""
    if split_file:
        return Path(split_file)
    weights = Path(weights)
    for candidate in (weights.parent / "split.csv", weights.with_suffix("") / "split.csv"):
        if candidate.is_file():
            return candidate
    raise DermcliError(f"no split.csv beside {weights} or in {weights.with_suffix('')}/: pass --split-file, "
                       "or --split all to evaluate every image of an external set")


def evaluate(weights: Path, data: Path, out: Path, split: str = "test", split_file: Path | None = None, images: Path | None = None,
             threshold: float | None = None, engine: str = "auto", batch_size: int = 64, track=None, log=lambda msg: None,
             tta: str | None = None, device: str = "auto") -> Path:
    """Write predictions.csv and eval_info.json to `out`, then the reports; returns `out`."""
    check("threshold", threshold)
    check("eval:batch-size", batch_size)
    from dermcli.devices import resolve_device
    from dermcli.distributed import start as join_job
    from dermcli.engine import check_tta, load_runner, predict_scored

    check_tta(tta)
    world = join_job(resolve_device(device))  # under torchrun each process scores a share of the images
    track, log = world.quiet(track, log)
    out = ensure_writable_dir(Path(out)) if world.main else Path(out)
    with world.main_first():  # rank 0 exports the ONNX graph and decodes the images into the cache; the others read them
        runner = load_runner(Path(weights), engine, log, device)
        meta = runner.meta
        table = load_dataset(Path(data), images)
        run_dir = Path(weights).parent  # where the run's history.csv, config.json and split.csv live
        if split != "all":
            source = resolve_split_file(Path(weights), split_file)
            table = select(table, load_split(source), split, str(source))
            if table.empty:
                raise DermcliError(f"{source}: the {split} split holds no images")
            run_dir = source.parent
        pixels = cached_images(table["path"].tolist(), meta["input_size"], track)
    tta = tta or meta.get("tta", "none")
    probs, distances = world.sharded(lambda rows: predict_scored(runner, pixels[rows], tta, batch_size, track), len(pixels))
    if not world.main:
        return out
    names = meta["class_names"]
    predictions = pd.DataFrame({"image_id": table["image_id"], "lesion_id": table["lesion_id"],
                                "label": [names[i] for i in task_targets(table["dx"], meta["task"])]})
    for column in METADATA:  # for the subgroup report
        if column in table.columns:
            predictions[column] = table[column]
    for k, name in enumerate(names):
        predictions[f"p_{name}"] = np.round(probs[:, k], 6)
    ood = {}
    if distances is not None:
        predictions["ood_score"] = np.round(distances, 4)
        ood = {"ood_threshold": meta["ood_threshold"], "unusual_fraction": float(np.mean(distances > meta["ood_threshold"]))}
    info = {
        "model": meta["backend"], "task": meta["task"], "class_names": names,
        "threshold": meta["threshold"] if threshold is None else threshold, "threshold_source": "validation" if threshold is None else "--threshold",
        "temperature": meta["temperature"], "tta": tta, "weights": str(weights), "run_dir": str(run_dir), "data": str(data), "split": split,
        "images": len(predictions), "val_metrics": meta.get("val_metrics", {}), "config": meta.get("config", {}),
        **ood, **({"members": meta["members"]} if "members" in meta else {}),
    }
    write_text(out / PREDICTIONS, predictions.to_csv(index=False))
    write_text(out / EVAL_INFO, json.dumps(info, indent=2) + "\n")
    return out
