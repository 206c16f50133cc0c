"""`dermcli ensemble A.pt B.pt … --data DATA --out ens.pt`: one checkpoint that averages its members.

Members must share task, class list, input size, preprocessing and split (refused, naming the first
mismatch). With --input-size, every member runs at that size instead, so members trained at other sizes
join (FixRes: train small, test larger, the objects' apparent size then matching that of random-resized-crop
training). The average's temperature and decision threshold are fitted on the shared validation split,
and the split is saved beside the file (ens/split.csv), so `eval`, `predict`, `export` and `report --card`
take the ensemble as they take any checkpoint.
"""

from pathlib import Path

import numpy as np
import torch

from dermcli.core.errors import DermcliError
from dermcli.core.files import ensure_writable_file
from dermcli.core.labels import has_binary_view, malignant_classes, malignant_score, malignant_targets, model_targets
from dermcli.core.options import check
from dermcli.data.cache import cached_images
from dermcli.data.label_set import chosen_table
from dermcli.data.overlap import record_digests
from dermcli.data.split import load_split, save_split, select
from dermcli.evaluation.evaluate import resolve_split_file
from dermcli.evaluation.metrics import calibrated_mean, temperature_note, threshold_for_sensitivity
from dermcli.inference.runners import TorchRunner
from dermcli.inference.tta import check_tta, view_outputs
from dermcli.models.checkpoint import read_checkpoint, save_checkpoint
from dermcli.models.ensemble import Ensemble
from dermcli.models.loading import build_model
from dermcli.training.objectives import validation_metrics
from dermcli.training.unusual import add_statistics

SHARED = ("task", "class_names", "input_size", "preprocessing")
SHARED_AT_ANY_SIZE = tuple(k for k in SHARED if k != "input_size")  # members run at one --input-size
# training_resolution: of the shared split's training images; the label set's grouping (members trained before either lack it)
RECORDED = ("training_resolution", "malignant", "data_classes", "data_malignant")
# how the members read their data and chose its labels: the ensemble reads it the same way (its statistics, its evals)
DATA_OPTIONS = ("format", "images", "image_column", "label_column", "group_column", "classes", "merge", "drop_other", "malignant")
MEMBER_KEYS = ("backend", "task", "class_names", "input_size", "preprocessing", "model_options", "temperature", "threshold")


def check_members(weights: list[Path], metas: list[dict], splits: list, shared: tuple = SHARED) -> None:
    for path, meta, split in zip(weights[1:], metas[1:], splits[1:]):
        for key in shared:
            if meta[key] != metas[0][key]:
                raise DermcliError(f"{path}: {key} {meta[key]!r}, not {metas[0][key]!r} as in {weights[0]}: an ensemble needs one")
        if malignant_classes(meta) != malignant_classes(metas[0]):
            raise DermcliError(f"{path}: malignant classes {malignant_classes(meta)}, not {malignant_classes(metas[0])} as in {weights[0]}")
        mine, theirs = dict(zip(split["image_id"], split["split"])), dict(zip(splits[0]["image_id"], splits[0]["split"]))
        differs = next((i for i in sorted(set(mine) | set(theirs)) if mine.get(i) != theirs.get(i)), None)
        if differs is not None:
            raise DermcliError(f"{path}: its split differs from {weights[0]}'s (image {differs} is in {mine.get(differs, 'none')}, "
                               f"not {theirs.get(differs, 'none')}): members must share one split")


def check_size(model: Ensemble, weights: list[Path], size: int) -> None:
    """Refuse a member that cannot run at size x size (a fixed-size head such as the CNN's), naming it."""
    for path, member in zip(weights, model.members):
        try:
            with torch.no_grad():
                member(torch.zeros(1, 3, size, size))
        except (RuntimeError, AssertionError, ValueError):  # a shape mismatch, or a ViT's own size check
            raise DermcliError(f"{path}: this model cannot run at --input-size {size}") from None


def calibrate(model: Ensemble, meta: dict, val, tta: str, target_sensitivity: float, track, log) -> dict:
    """The average's temperature and threshold, fitted on the validation views' mean as it will be used, and its
    validation metrics."""
    y = np.array(model_targets(val["dx"], meta))
    pixels = cached_images(val["path"].tolist(), meta["input_size"], track)
    views = list(view_outputs(TorchRunner(model, meta), pixels, tta, track=track)[0])
    temperature, probs = calibrated_mean(views, y)
    if note := temperature_note(temperature):
        log(note)
    threshold = (threshold_for_sensitivity(malignant_targets(y, meta), malignant_score(probs, meta), target_sensitivity)
                 if has_binary_view(meta) else None)
    val_metrics = validation_metrics(y, np.log(np.clip(probs, 1e-12, 1)), meta["task"])  # log-probabilities: logits of probs
    return {"threshold": threshold, "temperature": temperature, "val_metrics": val_metrics}


def make_ensemble(weights: list[Path], data: Path, out: Path, target_sensitivity: float = 0.90, tta: str = "none", track=None,
                  log=lambda msg: None, input_size: int = 0) -> Path:
    """Write the ensemble checkpoint `out` (and `out` without suffix / split.csv); returns `out`. With `tta`, the
    ensemble's default test-time augmentation, its calibration is fitted on the views' mean as it will be used;
    with `input_size`, every member runs at that size (0: the members' shared one)."""

    weights = [Path(w) for w in weights]
    if len(weights) < 2:
        raise DermcliError("an ensemble needs at least two checkpoints")
    check("target-sensitivity", target_sensitivity)
    if input_size:
        check("input-size", input_size)
    check_tta(tta)
    out = ensure_writable_file(out, "--out", "ensemble.pt")
    checkpoints = [read_checkpoint(w) for w in weights]
    metas = [c["meta"] for c in checkpoints]
    splits = [load_split(resolve_split_file(w, None)) for w in weights]
    check_members(weights, metas, splits, SHARED_AT_ANY_SIZE if input_size else SHARED)
    first = {**metas[0], "input_size": input_size or metas[0]["input_size"]}
    members = [{**{k: m[k] for k in MEMBER_KEYS}, "weights": str(w)} for w, m in zip(weights, metas)]
    model = Ensemble([build_model(m, c["state_dict"], str(w)) for w, m, c in zip(weights, metas, checkpoints)],
                     [m["temperature"] for m in metas]).eval()
    check_size(model, weights, first["input_size"])

    table = chosen_table({**first.get("config", {}), "data": str(data)})
    val = select(table, splits[0], "val")
    fitted = calibrate(model, first, val, tta, target_sensitivity, track, log)
    meta = {**{k: first[k] for k in SHARED}, **{k: first[k] for k in RECORDED if k in first}, "backend": "ensemble",
            "model_options": {"members": members}, **fitted, "tta": tta, "split_seed": first.get("split_seed"),
            "members": [{"weights": str(w), "backend": m["backend"], "input_size": m["input_size"], "val_metrics": m.get("val_metrics", {})}
                        for w, m in zip(weights, metas)],
            "config": {**{k: v for k, v in first.get("config", {}).items() if k in DATA_OPTIONS}, "members": [str(w) for w in weights],
                       "data": str(data), "target_sensitivity": target_sensitivity, "tta": tta, "input_size": first["input_size"]}}
    save_checkpoint(out, model, meta)
    save_split(splits[0], out.with_suffix("") / "split.csv")
    # the pixel digests a later eval checks other data against, at the size the ensemble decodes images at
    record_digests(out.with_suffix("") / "split.csv", splits[0], [select(table, splits[0], "train"), val], first["input_size"], track)
    # its own unusual-image statistics (of its last member's features), so its predictions carry the warning too
    ood = add_statistics(out, Path(data), out.with_suffix("") / "split.csv", track)
    log(f"unusual-image distance above {ood['ood_threshold']:.2f} ({ood['ood_pass_rate']:.1%} of val below)")
    log(f"ensemble of {len(weights)} at {first['input_size']} px on {len(val)} validation images: "
        + ", ".join(f"{k} {v:.4f}" for k, v in fitted["val_metrics"].items()) + f"; temperature {fitted['temperature']:.3f}"
        + (f", threshold {fitted['threshold']:.4f} for sensitivity {target_sensitivity:.2f}" if fitted["threshold"] is not None else ""))
    return out
