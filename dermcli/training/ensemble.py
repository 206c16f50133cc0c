"""`dermcli ensemble A.pt B.pt … --data DATA --out ens.pt`: one checkpoint that averages its members.

Members must share task, class list, input size, preprocessing and split (refused, naming the first
mismatch). The average's temperature and decision threshold are fitted on the shared validation split,
and the split is saved beside the file (ens/split.csv), so `eval`, `predict`, `export` and `report --card`
take the ensemble as they take any checkpoint.
"""

from pathlib import Path

import numpy as np

from dermcli.core.errors import DermcliError
from dermcli.core.files import ensure_writable_file
from dermcli.core.labels import has_binary_view, malignant_classes, malignant_score, malignant_targets, model_targets
from dermcli.core.options import check
from dermcli.data.cache import cached_images
from dermcli.data.label_set import chosen_table
from dermcli.data.split import load_split, save_split, select
from dermcli.evaluation.evaluate import resolve_split_file
from dermcli.evaluation.metrics import fit_temperature, temperature_note, threshold_for_sensitivity
from dermcli.inference.runners import TorchRunner
from dermcli.inference.tta import check_tta, view_outputs
from dermcli.models.checkpoint import read_checkpoint, save_checkpoint
from dermcli.models.ensemble import Ensemble
from dermcli.models.loading import build_model
from dermcli.models.outputs import probabilities
from dermcli.training.objectives import validation_metrics
from dermcli.training.unusual import add_statistics

SHARED = ("task", "class_names", "input_size", "preprocessing")
# training_resolution: of the shared split's training images; the label set's grouping (members trained before either lack it)
RECORDED = ("training_resolution", "malignant", "data_classes", "data_malignant")
# how the members read their data and chose its labels: the ensemble reads it the same way (its statistics, its evals)
DATA_OPTIONS = ("format", "images", "image_column", "label_column", "group_column", "classes", "merge", "drop_other", "malignant")
MEMBER_KEYS = ("backend", "task", "class_names", "input_size", "preprocessing", "model_options", "temperature", "threshold")


def check_members(weights: list[Path], metas: list[dict], splits: list) -> None:
    for path, meta, split in zip(weights[1:], metas[1:], splits[1:]):
        for key in SHARED:
            if meta[key] != metas[0][key]:
                raise DermcliError(f"{path}: {key} {meta[key]!r}, not {metas[0][key]!r} as in {weights[0]}: an ensemble needs one")
        if malignant_classes(meta) != malignant_classes(metas[0]):
            raise DermcliError(f"{path}: malignant classes {malignant_classes(meta)}, not {malignant_classes(metas[0])} as in {weights[0]}")
        mine, theirs = dict(zip(split["image_id"], split["split"])), dict(zip(splits[0]["image_id"], splits[0]["split"]))
        differs = next((i for i in sorted(set(mine) | set(theirs)) if mine.get(i) != theirs.get(i)), None)
        if differs is not None:
            raise DermcliError(f"{path}: its split differs from {weights[0]}'s (image {differs} is in {mine.get(differs, 'none')}, "
                               f"not {theirs.get(differs, 'none')}): members must share one split")


def make_ensemble(weights: list[Path], data: Path, out: Path, target_sensitivity: float = 0.90, tta: str = "none", track=None,
                  log=lambda msg: None) -> Path:
    """Write the ensemble checkpoint `out` (and `out` without suffix / split.csv); returns `out`. With `tta`, the
    ensemble's default test-time augmentation, its calibration is fitted on the views' mean as it will be used."""

    weights = [Path(w) for w in weights]
    if len(weights) < 2:
        raise DermcliError("an ensemble needs at least two checkpoints")
    check("target-sensitivity", target_sensitivity)
    check_tta(tta)
    out = ensure_writable_file(out, "--out", "ensemble.pt")
    checkpoints = [read_checkpoint(w) for w in weights]
    metas = [c["meta"] for c in checkpoints]
    splits = [load_split(resolve_split_file(w, None)) for w in weights]
    check_members(weights, metas, splits)
    first = metas[0]
    members = [{**{k: m[k] for k in MEMBER_KEYS}, "weights": str(w)} for w, m in zip(weights, metas)]
    model = Ensemble([build_model(m, c["state_dict"], str(w)) for w, m, c in zip(weights, metas, checkpoints)],
                     [m["temperature"] for m in metas]).eval()

    val = select(chosen_table({**first.get("config", {}), "data": str(data)}), splits[0], "val")
    y = np.array(model_targets(val["dx"], first))
    pixels, runner = cached_images(val["path"].tolist(), first["input_size"], track), TorchRunner(model, first)
    views = list(view_outputs(runner, pixels, tta, track=track)[0])
    temperature = fit_temperature(views, y)
    if note := temperature_note(temperature):
        log(note)
    probs = np.mean([probabilities(v, temperature) for v in views], axis=0)
    threshold = (threshold_for_sensitivity(malignant_targets(y, first), malignant_score(probs, first), target_sensitivity)
                 if has_binary_view(first) else None)
    val_metrics = validation_metrics(y, np.log(np.clip(probs, 1e-12, 1)), first["task"])  # log-probabilities: logits of probs
    meta = {**{k: first[k] for k in SHARED}, **{k: first[k] for k in RECORDED if k in first}, "backend": "ensemble",
            "model_options": {"members": members}, "threshold": threshold, "temperature": temperature, "tta": tta,
            "val_metrics": val_metrics, "split_seed": first.get("split_seed"),
            "members": [{"weights": str(w), "backend": m["backend"], "val_metrics": m.get("val_metrics", {})} for w, m in zip(weights, metas)],
            "config": {**{k: v for k, v in first.get("config", {}).items() if k in DATA_OPTIONS}, "members": [str(w) for w in weights],
                       "data": str(data), "target_sensitivity": target_sensitivity, "tta": tta}}
    save_checkpoint(out, model, meta)
    save_split(splits[0], out.with_suffix("") / "split.csv")
    # its own unusual-image statistics (of its last member's features), so its predictions carry the warning too
    ood = add_statistics(out, Path(data), out.with_suffix("") / "split.csv", track)
    log(f"unusual-image distance above {ood['ood_threshold']:.2f} ({ood['ood_pass_rate']:.1%} of val below)")
    log(f"ensemble of {len(weights)} on {len(val)} validation images: " + ", ".join(f"{k} {v:.4f}" for k, v in val_metrics.items())
        + f"; temperature {temperature:.3f}" + (f", threshold {threshold:.4f} for sensitivity {target_sensitivity:.2f}" if threshold is not None else ""))
    return out
