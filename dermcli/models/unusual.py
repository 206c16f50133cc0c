"""How unlike the training images an image is, for a warning on photos, screenshots and anything else that is
not dermoscopy: the Mahalanobis distance of the model's penultimate features (the input of its last linear
layer) to the nearest training-class mean, under one covariance shared by the classes (Lee et al., 2018).

The statistics are fitted on the training split (unaugmented) at the end of `train` and stored in the
checkpoint; the threshold is the validation split's 98th percentile, so 98% of validation images pass. The
score runs inside the model (a second output, also of the ONNX graph), so it costs one matrix product.
"""


import numpy as np
import torch
from torch import nn

from dermcli.core.errors import DermcliError

# Share of validation images below the threshold: 1 genuine lesion in 50 flagged, where the default still flags
# about two thirds of non-dermoscopy (95%: 1 in 20, 86%; 99%: 1 in 100, half). benchmarks/ood.py, docs/explain-and-ood.md.
PASS_RATE = 0.98
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


def pass_threshold(val_distances: np.ndarray, rate: float = PASS_RATE) -> float:
    """The distance a share `rate` of the validation images stay under."""
    return float(np.quantile(val_distances, rate))


