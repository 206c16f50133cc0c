"""Metric functions on arrays; no I/O, no torch.

Shapes: y_true (N,) int class indices; probs (N, K) probabilities whose rows sum to 1;
for binary metrics y_true (N,) in {0, 1} and score (N,) the positive-class probability.
"""

import numpy as np

EPS = 1e-7


def multiclass_summary(y_true: np.ndarray, probs: np.ndarray) -> dict:
    from sklearn import metrics as skm

    y_pred = probs.argmax(axis=1)
    return {
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(skm.balanced_accuracy_score(y_true, y_pred)),
        "macro_f1": float(skm.f1_score(y_true, y_pred, average="macro", labels=range(probs.shape[1]), zero_division=0)),
        "weighted_f1": float(skm.f1_score(y_true, y_pred, average="weighted", labels=range(probs.shape[1]), zero_division=0)),
        "macro_auc": macro_ovr_auc(y_true, probs),
        "loss": float(-np.mean(np.log(np.clip(probs[np.arange(len(y_true)), y_true], EPS, 1)))),
    }


def ovr_auc(y_true: np.ndarray, probs: np.ndarray) -> list[float | None]:
    """One-vs-rest ROC-AUC per class (None where the class is absent or alone), as MedMNIST computes it."""
    from sklearn import metrics as skm

    out = []
    for k in range(probs.shape[1]):
        positives = y_true == k
        out.append(float(skm.roc_auc_score(positives, probs[:, k])) if 0 < positives.sum() < len(y_true) else None)
    return out


def macro_ovr_auc(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Mean of the per-class one-vs-rest AUCs over classes present (MedMNIST's multi-class AUC)."""
    aucs = [a for a in ovr_auc(y_true, probs) if a is not None]
    return float(np.mean(aucs)) if aucs else float("nan")


def binary_summary(y_true: np.ndarray, score: np.ndarray, threshold: float) -> dict:
    """The binary card's table plus specificity, NPV, F1 and balanced accuracy at `threshold`."""
    from sklearn import metrics as skm

    y_pred = (score >= threshold).astype(int)
    tp = int(((y_pred == 1) & (y_true == 1)).sum())
    tn = int(((y_pred == 0) & (y_true == 0)).sum())
    fp = int(((y_pred == 1) & (y_true == 0)).sum())
    fn = int(((y_pred == 0) & (y_true == 1)).sum())
    both = 0 < y_true.sum() < len(y_true)
    recall, specificity = _ratio(tp, tp + fn), _ratio(tn, tn + fp)
    precision = _ratio(tp, tp + fp)
    p = np.clip(score, EPS, 1 - EPS)
    return {
        "accuracy": (tp + tn) / len(y_true),
        "roc_auc": float(skm.roc_auc_score(y_true, score)) if both else float("nan"),
        "pr_auc": float(skm.average_precision_score(y_true, score)) if both else float("nan"),
        "precision": precision,
        "recall": recall,
        "specificity": specificity,
        "npv": _ratio(tn, tn + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "balanced_accuracy": (recall + specificity) / 2,
        "loss": float(-np.mean(y_true * np.log(p) + (1 - y_true) * np.log(1 - p))),
        "threshold": float(threshold),
        "tp": tp, "fp": fp, "tn": tn, "fn": fn,
    }


def _ratio(a: int, b: int) -> float:
    return a / b if b else 0.0


def threshold_for_sensitivity(y_true: np.ndarray, score: np.ndarray, target: float) -> float:
    """The highest threshold whose sensitivity (score >= t among positives) reaches `target`."""
    positives = np.sort(score[y_true == 1])[::-1]
    if len(positives) == 0:
        return 0.5
    k = int(np.ceil(target * len(positives))) - 1
    return float(positives[min(max(k, 0), len(positives) - 1)])


def operating_points(y_true: np.ndarray, score: np.ndarray, targets=(0.80, 0.85, 0.90, 0.95)) -> list[dict]:
    rows = []
    for target in targets:
        t = threshold_for_sensitivity(y_true, score, target)
        m = binary_summary(y_true, score, t)
        rows.append({"target_sensitivity": target, "threshold": t, "sensitivity": m["recall"], "specificity": m["specificity"],
                     "ppv": m["precision"], "npv": m["npv"], "f1": m["f1"]})
    return rows


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def probabilities(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Logits (N, K) for K > 1 classes, or (N,) / (N, 1) for one sigmoid output -> probs (N, K or 2)."""
    logits = np.asarray(logits, dtype=np.float64) / temperature
    if logits.ndim == 2 and logits.shape[1] > 1:
        return softmax(logits)
    p = 1.0 / (1.0 + np.exp(-logits.reshape(-1)))
    return np.stack([1 - p, p], axis=1)


def nll(y_true: np.ndarray, probs: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(y_true)), y_true], EPS, 1))))


def fit_temperature(logits: np.ndarray, y_true: np.ndarray) -> float:
    """Temperature T minimising NLL of probabilities(logits / T) (a 1-D search over log T)."""
    grid = np.exp(np.linspace(np.log(0.2), np.log(5.0), 161))
    losses = [nll(y_true, probabilities(logits, t)) for t in grid]
    return float(grid[int(np.argmin(losses))])


def expected_calibration_error(y_true: np.ndarray, probs: np.ndarray, bins: int = 15) -> float:
    """ECE of the top-class confidence, `bins` equal-width bins."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y_true
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    ece = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            ece += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(ece)


def malignant_score(probs: np.ndarray, malignant_indices) -> np.ndarray:
    """Binary view of a multi-class model: p(mel) + p(bcc) + p(akiec). probs (N, 7) -> (N,)."""
    return probs[:, list(malignant_indices)].sum(axis=1)
