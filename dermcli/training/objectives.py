"""What training optimises and how it is scored: the loss (class-imbalance handling), the validation
figures that select checkpoints, and the malignant view of any task."""

import numpy as np
import torch

from dermcli.evaluation.metrics import binary_summary, multiclass_summary
from dermcli.models.outputs import probabilities
from dermcli.training.config import TrainConfig


def validation_metrics(y: np.ndarray, logits: np.ndarray, task: str, temperature: float = 1.0) -> dict:
    """Selection metric first: PR-AUC for binary models, macro-F1 for multi-class ones."""
    probs = probabilities(logits, temperature)
    if task == "binary":
        m = binary_summary(y, probs[:, 1], 0.5)
        return {"pr_auc": m["pr_auc"], "roc_auc": m["roc_auc"], "loss": m["loss"], "accuracy": m["accuracy"]}
    m = multiclass_summary(y, probs)
    return {"macro_f1": m["macro_f1"], "accuracy": m["accuracy"], "macro_auc": m["macro_auc"], "loss": m["loss"]}


class CrossEntropy:
    """Class-weighted, label-smoothed cross-entropy as a share of a batch's mean.

    `loss(logits, y, batch)`: the sum over this process's rows (labels y) divided by the weight of the whole
    global batch (labels `batch`), so the shares of all processes add up to the one-process mean; a weighted
    mean over each process's own rows would not (torch's weighted mean divides by those rows' weight)."""

    def __init__(self, weight: torch.Tensor, label_smoothing: float):
        self.weight, self.label_smoothing = weight, label_smoothing

    def __call__(self, logits: torch.Tensor, y: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        summed = torch.nn.functional.cross_entropy(logits, y, weight=self.weight, label_smoothing=self.label_smoothing, reduction="sum")
        return summed / self.weight[batch.to(self.weight.device)].sum()


class BinaryCrossEntropy:
    """BCE on the one logit with `pos_weight` and smoothed targets, as a share of the batch's plain mean
    (pos_weight scales terms but not the normaliser, as in torch's BCEWithLogitsLoss)."""

    def __init__(self, pos_weight: torch.Tensor, label_smoothing: float):
        self.pos_weight, self.label_smoothing = pos_weight, label_smoothing

    def __call__(self, logits: torch.Tensor, y: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        target = y.float() * (1 - self.label_smoothing) + 0.5 * self.label_smoothing
        summed = torch.nn.functional.binary_cross_entropy_with_logits(logits.squeeze(1), target, pos_weight=self.pos_weight, reduction="sum")
        return summed / len(batch)


def loss_function(cfg: TrainConfig, y_train: np.ndarray, device: torch.device | str = "cpu", classes: int = 7):
    """The task's loss for `classes` classes, called as loss(logits, labels of these rows, labels of the whole global batch)."""
    counts = np.bincount(y_train, minlength=2 if cfg.task == "binary" else classes).astype(np.float64)
    power = {"none": 0.0, "sqrt": 0.5, "balanced": 1.0}[cfg.class_weights]
    if cfg.task == "binary":
        # pos_weight = negatives / positives (about 4.1 on HAM10000), to the chosen power.
        pos_weight = torch.tensor([(counts[0] / max(counts[1], 1)) ** power], dtype=torch.float32, device=device)
        return BinaryCrossEntropy(pos_weight, cfg.label_smoothing)
    weights = (counts.sum() / (len(counts) * np.maximum(counts, 1))) ** power
    return CrossEntropy(torch.tensor(weights, dtype=torch.float32, device=device), cfg.label_smoothing)
