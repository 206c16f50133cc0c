"""Run a checkpoint over a split (or a whole external set) and save predictions.csv + the reports."""

import json
from pathlib import Path

import numpy as np
import pandas as pd

from dermcli.data.dataset import load_dataset
from dermcli.data.tables import METADATA
from dermcli.data.cache import cached_images
from dermcli.data.overlap import SEEN, digest_column, seen_split
from dermcli.data.split import GROUPLESS_WARNING, has_group_ids, load_split, select
from dermcli.errors import DermcliError
from dermcli.io import ensure_writable_dir, write_text
from dermcli.labels import task_targets
from dermcli.options import check

PREDICTIONS = "predictions.csv"
EVAL_INFO = "eval_info.json"
OVERLAP = "overlap"  # the sub-folder for a set's images that the model trained or was chosen on (--allow-overlap)


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


def training_split(weights: Path, split_file: Path | None) -> pd.DataFrame | None:
    """The checkpoint's split (see resolve_split_file), or None when it has none to be found."""
    try:
        return load_split(resolve_split_file(weights, split_file))
    except DermcliError:
        return None


def check_overlap(table: pd.DataFrame, pixels: np.ndarray, split: pd.DataFrame | None, size: int, allow: bool, weights: Path,
                  log) -> pd.Series:
    """Which images of the set the checkpoint trained or was chosen on ("train"/"val", else ""); refused unless `allow`."""
    if split is None:
        log(f"warning: no split.csv found for {weights}: its training images were not checked against this set (pass --split-file)")
        return pd.Series("", index=table.index)
    seen = seen_split(table, pixels, split, size)
    if (seen != "").any() and not allow:
        first = seen.index[seen != ""][0]
        raise DermcliError(f"{(seen != '').sum()} of {len(seen)} images are in {weights}'s {' or '.join(sorted(set(seen) - {''}))} split "
                           f"(first: {table.at[first, 'image_id']}, in {seen[first]}): figures on them flatter the model; "
                           "use another set, or --allow-overlap to report them apart")
    if digest_column(size) not in split.columns:
        log(f"note: the split of {weights} records no pixel digests: this set was checked against it by image id only")
    return seen


def evaluate(weights: Path, data: Path, out: Path, split: str = "test", split_file: Path | None = None, images: Path | None = None,
             threshold: float | None = None, engine: str = "auto", batch_size: int = 64, track=None, log=lambda msg: None,
             tta: str | None = None, device: str = "auto", allow_overlap: bool = False) -> Path:
    """Write predictions.csv and eval_info.json to `out` (and, with `allow_overlap`, the checkpoint's own training
    or validation images found in the set to out/overlap/, apart from the headline); returns `out`."""
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
        own_split = training_split(Path(weights), split_file) if split == "all" else None
        if split != "all":
            source = resolve_split_file(Path(weights), split_file)
            own_split = load_split(source)
            table = select(table, own_split, split, str(source))
            if table.empty:
                raise DermcliError(f"{source}: the {split} split holds no images")
            run_dir = source.parent
            if not has_group_ids(table):
                log(GROUPLESS_WARNING.format(data=data))
        pixels = cached_images(table["path"].tolist(), meta["input_size"], track)
    # the training and validation splits are the model's own by definition; any other set must not hold their images
    seen = (pd.Series("", index=table.index) if split in SEEN else
            check_overlap(table, pixels, own_split, meta["input_size"], allow_overlap, Path(weights), log))
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
        "val_metrics": meta.get("val_metrics", {}), "config": meta.get("config", {}),
        **ood, **({"members": meta["members"]} if "members" in meta else {}),
    }
    fresh = (seen == "").to_numpy()
    if not fresh.any():
        raise DermcliError(f"every image of {data} is one {weights} trained or was chosen on: there is nothing to evaluate it on")
    if not fresh.all():  # --allow-overlap: the model's own images are reported apart, never in the headline
        counts = seen[~fresh].value_counts().to_dict()
        info["overlap"] = {"folder": OVERLAP, **counts}
        log(f"{(~fresh).sum()} images are the model's own ({', '.join(f'{n} {s}' for s, n in counts.items())}): "
            f"reported apart in {out / OVERLAP}, left out of the figures in {out}")
        write_eval(out / OVERLAP, predictions[~fresh].assign(seen_in=seen[~fresh].to_numpy()), {**info, "split": f"{split}, the model's own images"})
    write_eval(out, predictions[fresh], info)
    return out


def write_eval(folder: Path, predictions: pd.DataFrame, info: dict) -> None:
    write_text(ensure_writable_dir(folder) / PREDICTIONS, predictions.to_csv(index=False))
    write_text(folder / EVAL_INFO, json.dumps({**info, "images": len(predictions)}, indent=2) + "\n")
