"""What training optimises and how it is scored: the loss (class-imbalance handling), the validation
figures that select checkpoints, and the malignant view of any task."""

import numpy as np
import torch

from dermcli.config import TrainConfig
from dermcli.labels import MALIGNANT_INDICES
from dermcli.metrics import binary_summary, malignant_score, multiclass_summary, probabilities


def positive_score(probs: np.ndarray, task: str) -> np.ndarray:
    """Malignant probability (N,) from task probabilities (N, K)."""
    return probs[:, 1] if task == "binary" else malignant_score(probs, MALIGNANT_INDICES)


def malignant_targets(y: np.ndarray, task: str) -> np.ndarray:
    return y if task == "binary" else np.isin(y, MALIGNANT_INDICES).astype(int)


def validation_metrics(y: np.ndarray, logits: np.ndarray, task: str, temperature: float = 1.0) -> dict:
    """Selection metric first: PR-AUC for binary models, macro-F1 for multi-class ones."""
    probs = probabilities(logits, temperature)
    if task == "binary":
        m = binary_summary(y, probs[:, 1], 0.5)
        return {"pr_auc": m["pr_auc"], "roc_auc": m["roc_auc"], "loss": m["loss"], "accuracy": m["accuracy"]}
    m = multiclass_summary(y, probs)
    return {"macro_f1": m["macro_f1"], "accuracy": m["accuracy"], "macro_auc": m["macro_auc"], "loss": m["loss"]}


def loss_function(cfg: TrainConfig, y_train: np.ndarray, device: torch.device | str = "cpu"):
    counts = np.bincount(y_train, minlength=2 if cfg.task == "binary" else 7).astype(np.float64)
    power = {"none": 0.0, "sqrt": 0.5, "balanced": 1.0}[cfg.class_weights]
    if cfg.task == "binary":
        # pos_weight = negatives / positives (about 4.1 on HAM10000), to the chosen power.
        pos_weight = torch.tensor([(counts[0] / max(counts[1], 1)) ** power], dtype=torch.float32, device=device)
        bce = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
        smooth = cfg.label_smoothing
        return lambda logits, y: bce(logits.squeeze(1), y.float() * (1 - smooth) + 0.5 * smooth)
    weights = (counts.sum() / (len(counts) * np.maximum(counts, 1))) ** power
    return torch.nn.CrossEntropyLoss(weight=torch.tensor(weights, dtype=torch.float32, device=device), label_smoothing=cfg.label_smoothing)
