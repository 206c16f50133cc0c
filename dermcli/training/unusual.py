"""Fitting the unusual-image statistics of dermcli.models.unusual on a run's training split, and adding them to trained weights."""

from pathlib import Path

import numpy as np
from torch import nn

from dermcli.core.labels import model_targets
from dermcli.data.label_set import chosen_table
from dermcli.data.split import load_split, select
from dermcli.evaluation.evaluate import resolve_split_file
from dermcli.inference.forward import predict_outputs
from dermcli.models.checkpoint import read_checkpoint, write_payload
from dermcli.models.loading import build_model
from dermcli.models.registry import get_backend
from dermcli.models.unusual import PASS_RATE, FeatureDistance, ScoredModel, WithFeatures, fit_distance, pass_threshold
from dermcli.training.config import TrainConfig
from dermcli.training.features import trainable_inputs


def training_statistics(model: nn.Module, train_batches, y_train: np.ndarray, track=None) -> dict:
    """fit_distance on `model`'s penultimate features of the (unaugmented) training batches."""

    return fit_distance(predict_outputs(WithFeatures(model), train_batches, track=track)[1], y_train)


def fit_statistics(trainable, train_set: tuple, val_in, track=None) -> tuple[dict, np.ndarray, np.ndarray]:
    """The statistics of `trainable`'s features on `train_set` (unaugmented inputs, targets), and its logits and
    distances on the validation inputs `val_in` (where the threshold and the calibration are fitted)."""

    stats = training_statistics(trainable, *train_set, track=track)
    logits, distances = predict_outputs(ScoredModel(trainable, FeatureDistance(**stats)), val_in, track=track)
    return stats, logits, distances


def add_statistics(weights: Path, data: Path, split_file: Path | None = None, track=None) -> dict:
    """Fit the statistics of a trained checkpoint on its own run's training split (threshold on its validation
    split) and store them in it, leaving the weights untouched; returns the new metadata entries. A run that
    trained above a frozen prefix reads that prefix's outputs from the feature cache, as training did."""

    payload = read_checkpoint(weights)
    meta = payload["meta"]
    cfg = TrainConfig.from_dict({"data": str(data), "out": "", **meta["config"],  # an ensemble's config has no run folder
                                 "teacher": "", "input_size": meta["input_size"], "preprocessing": meta["preprocessing"]})
    frozen, trainable = get_backend(meta["backend"]).split_frozen(build_model(meta, payload["state_dict"], str(weights)).eval(), cfg.freeze)
    table, split = chosen_table({**meta["config"], "data": str(data)}), load_split(resolve_split_file(weights, split_file))
    inputs = {}
    for part in ("train", "val"):
        rows = select(table, split, part)
        inputs[part] = (trainable_inputs(cfg, cfg.freeze, frozen, rows["path"].tolist(), False, track),
                        np.array(model_targets(rows["dx"], meta)))
    stats, _, distances = fit_statistics(trainable, inputs["train"], inputs["val"][0], track)
    added = {"ood_threshold": pass_threshold(distances), "ood_pass_rate": PASS_RATE}
    write_payload(weights, {**payload, "meta": {**meta, **added}, "ood": stats})
    return added
