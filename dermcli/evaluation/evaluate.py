"""Run a checkpoint over a split (or a whole external set) and save predictions.csv + the reports."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from dermcli.core.errors import DermcliError
from dermcli.core.files import ensure_writable_dir, write_text
from dermcli.core.labels import has_binary_view, malignant_classes, malignant_score, score_label, sorted_labels
from dermcli.core.options import check
from dermcli.data.cache import cached_images
from dermcli.data.dataset import Source, load_dataset
from dermcli.data.label_set import chosen_table, model_truth
from dermcli.data.overlap import SEEN, digest_column, seen_split
from dermcli.data.split import GROUPLESS_WARNING, has_group_ids, load_split, select
from dermcli.data.tables import METADATA
from dermcli.evaluation.formatting import ood_pass_rate
from dermcli.inference.loading import load_runner
from dermcli.inference.predict import input_resolution, log_resampled
from dermcli.inference.tta import check_tta, predict_scored
from dermcli.runtime.devices import resolve_device
from dermcli.runtime.distributed import start as join_job

PREDICTIONS = "predictions.csv"
EVAL_INFO = "eval_info.json"
MALIGNANT_VIEW = "malignant_view"  # the sub-folder for every image with a known grouping, labels the model lacks included
OVERLAP = "overlap"  # the sub-folder for a set's images that the model trained or was chosen on (--allow-overlap)


def own_split_file(weights: Path) -> Path | None:
    """The run's split.csv: beside the weights (a run folder), or in the folder named after the weights file (how
    shipped weights keep their run files: weights/NAME.pt, weights/NAME/split.csv); None when there is none."""
    weights = Path(weights)
    return next((c for c in (weights.parent / "split.csv", weights.with_suffix("") / "split.csv") if c.is_file()), None)


def resolve_split_file(weights: Path, split_file: Path | None) -> Path:
    """--split-file, else the run's own split.csv."""
    if split_file:
        return Path(split_file)
    if (own := own_split_file(weights)) is None:
        raise DermcliError(f"no split.csv beside {weights} or in {Path(weights).with_suffix('')}/: pass --split-file, "
                           "or --split all to evaluate every image of an external set")
    return own


def training_split(weights: Path, split_file: Path | None) -> pd.DataFrame | None:
    """The split the checkpoint trained on, to check an evaluation set against: its own split.csv, whatever
    --split-file chose the rows from (several models on one test split each bring their own), else --split-file;
    None when neither exists."""
    source = own_split_file(weights) or split_file
    return load_split(source) if source else None


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


def evaluate(weights: Path, data, out: Path, *, split: str = "test", split_file: Path | None = None, images: Path | None = None,
             threshold: float | None = None, engine: str = "auto", batch_size: int = 64, tta: str | None = None, device: str = "auto",
             allow_overlap: bool = False, native_resolution: bool = False, label_map: str = "", track=None, log=lambda msg: None) -> Path:
    """Write predictions.csv and eval_info.json to `out` (and, with `allow_overlap`, the checkpoint's own training
    or validation images found in the set to out/overlap/, apart from the headline); returns `out`. `data` is a
    path or a data.dataset.Source; an external set's labels are matched to the model's classes (model_truth)."""
    check("threshold", threshold)
    check("eval:batch-size", batch_size)
    check_tta(tta)
    weights = Path(weights)
    world = join_job(resolve_device(device))  # under torchrun each process scores a share of the images
    track, log = world.quiet(track, log)
    out = ensure_writable_dir(Path(out)) if world.main else Path(out)
    with world.main_first():  # rank 0 exports the ONNX graph and decodes the images into the cache; the others read them
        runner = load_runner(weights, engine, log, device)
        table, own_split, run_dir = evaluation_set(weights, Source.of(data, images=images), runner.meta, split, split_file, log)
        check_shared_labels(table, runner.meta, label_map)
        resolution = input_resolution(runner.meta, native_resolution, log, weights)
        log_resampled(table["path"].tolist(), resolution, log)
        pixels = cached_images(table["path"].tolist(), runner.meta["input_size"], track, resolution=resolution)
    # the training and validation splits are the model's own by definition; any other set must not hold their images
    seen = (pd.Series("", index=table.index) if split in SEEN else
            check_overlap(table, pixels, own_split, runner.meta["input_size"], allow_overlap, weights, log))
    tta = tta or runner.meta.get("tta", "none")
    probs, distances = world.sharded(lambda rows: predict_scored(runner, pixels[rows], tta, batch_size, track), len(pixels))
    if world.main:
        info = {**eval_info(runner.meta, distances, threshold), "tta": tta, "weights": str(weights), "run_dir": str(run_dir),
                "data": str(Source.of(data).path), "split": split}
        predictions, malignant = predictions_table(table, runner.meta, probs, distances, label_map)
        known = predictions["label"].notna().to_numpy()
        if missing := unknown_labels(table, known, malignant, runner.meta, log):
            info["unknown_labels"] = missing
        write_evals(out, predictions[known].reset_index(drop=True), seen[known].reset_index(drop=True), info, log)
        # the labels the model lacks stay in its binary view where their grouping is known (SCC is malignant)
        in_view = malignant.notna().to_numpy() & (seen == "").to_numpy()
        if missing and runner.meta["task"] == "multiclass" and has_binary_view(runner.meta) and (in_view & ~known).any():
            write_eval(out / MALIGNANT_VIEW, malignant_view(predictions[in_view], malignant[in_view], malignant_score(probs[in_view], runner.meta)),
                       malignant_view_info(info))
        else:
            stale_overlap(out / MALIGNANT_VIEW)  # an earlier eval's view is not this one's
    return out


def evaluation_set(weights: Path, data: Source, meta: dict, split: str, split_file: Path | None, log):
    """The images to evaluate (a split of the data set, its labels chosen as the run chose them; or all of an
    external set), the checkpoint's own split where known, and the run folder the eval belongs to."""
    config = meta.get("config", {})
    table = load_dataset(data) if split == "all" else chosen_table(config, source=data)
    own_split = training_split(weights, split_file)
    if split == "all":
        return table, own_split, weights.parent
    source = resolve_split_file(weights, split_file)
    # the rows' split is the model's own unless --split-file names another beside it: read each file once
    rows_split = load_split(source) if split_file and own_split_file(weights) else own_split
    table = select(table, rows_split, split, str(source))
    if table.empty:
        raise DermcliError(f"{source}: the {split} split holds no images")
    if not has_group_ids(table):
        log(GROUPLESS_WARNING.format(data=data.path))
    return table, own_split, source.parent


def predictions_table(table: pd.DataFrame, meta: dict, probs: np.ndarray, distances: np.ndarray | None,
                      label_map: str = "") -> tuple[pd.DataFrame, pd.Series]:
    """predictions.csv: each image's ids, label (the model's class for it; empty where the model does not know its
    label), metadata (for subgroups), probabilities and unusual-image distance; and each image's malignant truth."""
    names, binary = meta["class_names"], meta["task"] == "binary"
    classes, malignant = model_truth(table["dx"], meta, label_map)
    labels = malignant.map({0: "benign", 1: "malignant"}) if binary else classes
    predictions = pd.DataFrame({"image_id": table["image_id"], "lesion_id": table["lesion_id"], "label": labels})
    for column in METADATA:
        if column in table.columns:
            predictions[column] = table[column]
    for k, name in enumerate(names):
        predictions[f"p_{name}"] = np.round(probs[:, k], 6)
    if distances is not None:
        predictions["ood_score"] = np.round(distances, 4)
    return predictions, malignant


def check_shared_labels(table: pd.DataFrame, meta: dict, label_map: str) -> None:
    """Refuse, before any image is decoded, a set none of whose labels the model knows."""
    classes, malignant = model_truth(table["dx"], meta, label_map)
    if (malignant if meta["task"] == "binary" else classes).isna().all():
        names = meta["class_names"] if meta["task"] == "multiclass" else meta.get("data_classes", meta["class_names"])
        raise DermcliError(f"the set shares no label with the model (its labels: {', '.join(sorted_labels(table['dx']))}; the model's: "
                           f"{', '.join(names)}): map them with --label-map DATA=MODEL,...")


def unknown_labels(table: pd.DataFrame, known: np.ndarray, malignant: pd.Series, meta: dict, log) -> dict:
    """How many images of each label the model does not know; they leave the figures of its task, and the log says so."""
    counts = table.loc[~known, "dx"].value_counts().sort_index()
    if len(counts):
        in_view = int((~known & malignant.notna().to_numpy()).sum()) if meta["task"] == "multiclass" else 0
        log(f"{(~known).sum()} images have labels the model does not know ({', '.join(f'{k} {v}' for k, v in counts.items())}): "
            f"left out of the {meta['task']} figures" + (f"; {in_view} of them are in the malignant view, {MALIGNANT_VIEW}/" if in_view else ""))
    return {str(k): int(v) for k, v in counts.items()}


def malignant_view(predictions: pd.DataFrame, malignant: pd.Series, score: np.ndarray) -> pd.DataFrame:
    """A multi-class model's malignant score as a binary eval of images whose grouping is known."""
    view = predictions[[c for c in predictions.columns if not c.startswith("p_")]].assign(label=malignant.map({0: "benign", 1: "malignant"}).to_numpy())
    return view.assign(p_benign=np.round(1 - score, 6), p_malignant=np.round(score, 6)).reset_index(drop=True)


def malignant_view_info(info: dict) -> dict:
    return {**{k: v for k, v in info.items() if k != "unknown_labels"}, "task": "binary", "class_names": ["benign", "malignant"],
            "malignant": ["malignant"], "temperature": 1.0, "split": f"{info['split']}, malignant view ({score_label(info)})"}


def eval_info(meta: dict, distances: np.ndarray | None, threshold: float | None) -> dict:
    ood = {} if distances is None else {"ood_threshold": meta["ood_threshold"], "ood_pass_rate": ood_pass_rate(meta),
                                        "unusual_fraction": float(np.mean(distances > meta["ood_threshold"]))}
    return {"model": meta["backend"], "task": meta["task"], "class_names": meta["class_names"], "malignant": malignant_classes(meta),
            **({"data_malignant": meta["data_malignant"]} if "data_malignant" in meta else {}),
            "threshold": meta["threshold"] if threshold is None else threshold,
            "threshold_source": "validation" if threshold is None else "--threshold", "temperature": meta["temperature"],
            "val_metrics": meta.get("val_metrics", {}), "config": meta.get("config", {}),
            **ood, **({"members": meta["members"]} if "members" in meta else {})}


def write_evals(out: Path, predictions: pd.DataFrame, seen: pd.Series, info: dict, log) -> None:
    """The headline eval in `out`; under --allow-overlap, the model's own images apart in out/overlap, never in the headline."""
    fresh = (seen == "").to_numpy()
    if not fresh.any():
        raise DermcliError(f"every image of {info['data']} is one {info['weights']} trained or was chosen on: there is nothing to evaluate it on")
    if not fresh.all():
        counts = seen[~fresh].value_counts().to_dict()
        info["overlap"] = {"folder": OVERLAP, **counts}
        log(f"{(~fresh).sum()} images are the model's own ({', '.join(f'{n} {s}' for s, n in counts.items())}): "
            f"reported apart in {out / OVERLAP}, left out of the figures in {out}")
        write_eval(out / OVERLAP, predictions[~fresh].assign(seen_in=seen[~fresh].to_numpy()), {**info, "split": f"{info['split']}, the model's own images"})
    else:
        stale_overlap(out / OVERLAP)
    write_eval(out, predictions[fresh], info)


def stale_overlap(folder: Path) -> None:
    """An earlier eval's overlap/ in the same output folder would be read as this eval's: it goes with the
    predictions.csv this eval replaces (only a folder an eval wrote: it holds eval_info.json)."""
    if (folder / EVAL_INFO).is_file():
        shutil.rmtree(folder)


def write_eval(folder: Path, predictions: pd.DataFrame, info: dict) -> None:
    write_text(ensure_writable_dir(folder) / PREDICTIONS, predictions.to_csv(index=False))
    write_text(folder / EVAL_INFO, json.dumps({**info, "images": len(predictions)}, indent=2) + "\n")
