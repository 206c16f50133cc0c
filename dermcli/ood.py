"""How unlike the training images an image is, for a warning on photos, screenshots and anything else that is
not dermoscopy: the Mahalanobis distance of the model's penultimate features (the input of its last linear
layer) to the nearest training-class mean, under one covariance shared by the classes (Lee et al., 2018).

The statistics are fitted on the training split (unaugmented) at the end of `train` and stored in the
checkpoint; the threshold is the validation split's 95th percentile, so 95% of validation images pass. The
score runs inside the model (a second output, also of the ONNX graph), so it costs one matrix product.
"""

from pathlib import Path

import numpy as np
import torch
from torch import nn

from dermcli.errors import DermcliError

PASS_RATE = 0.95  # share of validation images below the threshold
# Variance floor, relative to the features' mean square: a model whose features barely vary within classes
# (a barely trained one) would otherwise need float32 sums that cancel to nothing, and PyTorch and ONNX
# Runtime would disagree. Trained models' within-class variances are orders of magnitude above it.
VARIANCE_FLOOR = 1e-4


def last_linear(model: nn.Module) -> nn.Linear:
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise DermcliError(f"{type(model).__name__} has no linear layer whose input could serve as features")
    return linears[-1]


class WithFeatures(nn.Module):
    """model(x) -> (logits, the input of its last linear layer, flattened)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self._tap = [last_linear(model)]  # in a list: not a second registration of the module

    def forward(self, x: torch.Tensor):
        seen = []
        hook = self._tap[0].register_forward_pre_hook(lambda module, args: seen.append(args[0]))
        try:
            logits = self.model(x)
        finally:
            hook.remove()
        return logits, seen[-1].flatten(1)


class FeatureDistance(nn.Module):
    """Distance of features to the nearest class mean, in the units of the shared covariance."""

    def __init__(self, means: torch.Tensor, whitening: torch.Tensor):
        super().__init__()
        self.register_buffer("means", means.float())
        self.register_buffer("whitening", whitening.float())

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        z = (features.float()[:, None, :] - self.means[None]) @ self.whitening.T
        return z.pow(2).sum(-1).min(-1).values.sqrt()


class ScoredModel(nn.Module):
    """model(x) -> (logits, distance): what runners and the ONNX export run when a checkpoint has statistics."""

    def __init__(self, model: nn.Module, distance: FeatureDistance):
        super().__init__()
        self.inner, self.distance = WithFeatures(model), distance

    def forward(self, x: torch.Tensor):
        logits, features = self.inner(x)
        return logits, self.distance(features)


def ledoit_wolf(centred: torch.Tensor) -> torch.Tensor:
    """Ledoit-Wolf shrinkage of the covariance of centred rows towards a multiple of the identity, with the
    shrinkage that minimises the expected error (as scikit-learn's ledoit_wolf): well-conditioned even when
    there are fewer images than feature dimensions, or dead ReLU units, so the distance stays numerically stable."""
    n, p = centred.shape
    cov = centred.T @ centred / n
    mu = cov.diagonal().mean()
    squares = centred.pow(2)
    beta = ((squares.T @ squares).sum() / n - cov.pow(2).sum()) / (p * n)
    delta = (cov.pow(2).sum() - 2 * mu * cov.diagonal().sum() + p * mu * mu) / p
    shrinkage = float(min(beta, delta) / delta) if delta > 0 else 1.0
    return (1 - shrinkage) * cov + shrinkage * mu * torch.eye(p, dtype=cov.dtype)


def fit_distance(features: np.ndarray, labels: np.ndarray) -> dict:
    """Class means and the whitening matrix W (W^T W = inverse shared covariance) of training features."""
    f = torch.from_numpy(np.asarray(features, dtype=np.float64))
    y = torch.from_numpy(np.asarray(labels))
    classes = torch.unique(y)
    means = torch.stack([f[y == c].mean(0) for c in classes])
    cov = ledoit_wolf(f - means[torch.searchsorted(classes, y)]) + VARIANCE_FLOOR * f.pow(2).mean() * torch.eye(f.shape[1], dtype=f.dtype)
    cholesky = torch.linalg.cholesky(cov)
    whitening = torch.linalg.solve_triangular(cholesky, torch.eye(len(cov), dtype=cov.dtype), upper=False)
    return {"means": means.float(), "whitening": whitening.float()}


def training_statistics(model: nn.Module, train_batches, y_train: np.ndarray, track=None) -> dict:
    """fit_distance on `model`'s penultimate features of the (unaugmented) training batches."""
    from dermcli.batches import predict_outputs

    return fit_distance(predict_outputs(WithFeatures(model), train_batches, track=track)[1], y_train)


def pass_threshold(val_distances: np.ndarray) -> float:
    """The distance PASS_RATE of the validation images stay under."""
    return float(np.quantile(val_distances, PASS_RATE))


def inference_model(path: Path) -> tuple[nn.Module, dict]:
    """A checkpoint's model in eval mode, scored (logits, distance) when the checkpoint has statistics."""
    from dermcli.checkpoint import build_model, read_checkpoint

    data = read_checkpoint(path)
    model = build_model(data["meta"], data["state_dict"], str(path))
    if "ood" in data:
        model = ScoredModel(model, FeatureDistance(data["ood"]["means"], data["ood"]["whitening"]))
    return model.eval(), data["meta"]


def fit_statistics(trainable, train_set: tuple, val_in, track=None) -> tuple[dict, np.ndarray, np.ndarray]:
    """The statistics of `trainable`'s features on `train_set` (unaugmented inputs, targets), and its logits and
    distances on the validation inputs `val_in` (where the threshold and the calibration are fitted)."""
    from dermcli.batches import predict_outputs

    stats = training_statistics(trainable, *train_set, track=track)
    logits, distances = predict_outputs(ScoredModel(trainable, FeatureDistance(**stats)), val_in, track=track)
    return stats, logits, distances


def add_statistics(weights: Path, data: Path, split_file: Path | None = None, track=None) -> dict:
    """Fit the statistics of a trained checkpoint on its own run's training split (threshold on its validation
    split) and store them in it, leaving the weights untouched; returns the new metadata entries. A run that
    trained above a frozen prefix reads that prefix's outputs from the feature cache, as training did."""
    from dermcli.checkpoint import build_model, read_checkpoint, write_payload
    from dermcli.config import TrainConfig
    from dermcli.data.dataset import load_dataset
    from dermcli.data.split import load_split, select
    from dermcli.evaluate import resolve_split_file
    from dermcli.labels import task_targets
    from dermcli.models import get_backend
    from dermcli.train import trainable_inputs

    payload = read_checkpoint(weights)
    meta = payload["meta"]
    cfg = TrainConfig.from_dict({"data": str(data), "out": "", **meta["config"],  # an ensemble's config has no run folder
                                 "teacher": "", "input_size": meta["input_size"], "preprocessing": meta["preprocessing"]})
    frozen, trainable = get_backend(meta["backend"]).split_frozen(build_model(meta, payload["state_dict"], str(weights)).eval(), cfg.freeze)
    table, split = load_dataset(Path(data)), load_split(resolve_split_file(weights, split_file))
    inputs = {}
    for part in ("train", "val"):
        rows = select(table, split, part)
        inputs[part] = (trainable_inputs(cfg, cfg.freeze, frozen, rows["path"].tolist(), False, track),
                        np.array(task_targets(rows["dx"], meta["task"])))
    stats, _, distances = fit_statistics(trainable, inputs["train"], inputs["val"][0], track)
    added = {"ood_threshold": pass_threshold(distances), "ood_pass_rate": PASS_RATE}
    write_payload(weights, {**payload, "meta": {**meta, **added}, "ood": stats})
    return added
