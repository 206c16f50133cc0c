"""Vectorised bootstrap confidence intervals that resample lesions (groups), not images.

All B resamples are evaluated at once as per-image weight matrices W (B, N): W[b, i] is how many
times image i's lesion was drawn in resample b.
"""

import numpy as np


def group_weights(groups: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """(B, N) image weights from drawing len(unique groups) groups with replacement, B times."""
    _, group_of = np.unique(groups, return_inverse=True)
    n_groups = group_of.max() + 1
    draws = np.random.default_rng(seed).integers(0, n_groups, (resamples, n_groups))
    counts = np.zeros((resamples, n_groups), dtype=np.float64)
    np.add.at(counts, (np.arange(resamples)[:, None], draws), 1.0)
    return counts[:, group_of]


def weighted_auc(y: np.ndarray, score: np.ndarray, w: np.ndarray) -> np.ndarray:
    """ROC-AUC for each weight row: y (N,) {0,1}, score (N,), w (B, N) -> (B,). Ties count half."""
    order = np.argsort(score, kind="stable")
    y, score, w = y[order], score[order], w[:, order]
    _, first, counts = np.unique(score, return_index=True, return_counts=True)
    neg = w * (y == 0)
    neg_tie = np.add.reduceat(neg, first, axis=1)  # negative weight per distinct score
    neg_below = np.cumsum(neg_tie, axis=1) - neg_tie
    tie_of = np.repeat(np.arange(len(first)), counts)
    pos = w * (y == 1)
    wins = (pos * (neg_below[:, tie_of] + 0.5 * neg_tie[:, tie_of])).sum(axis=1)
    pairs = pos.sum(axis=1) * neg.sum(axis=1)
    return np.where(pairs > 0, wins / np.maximum(pairs, 1e-12), np.nan)  # undefined without both classes


def weighted_average_precision(y: np.ndarray, score: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Average precision (sklearn's step-wise PR-AUC) for each weight row -> (B,); undefined without both classes,
    like ROC-AUC (on a set of positives only it is 1 whatever the score)."""
    order = np.argsort(-score, kind="stable")
    y, score, w = y[order], score[order], w[:, order]
    _, first = np.unique(-score, return_index=True)
    last = np.append(first[1:], len(score)) - 1  # thresholds sit at the end of each tie group
    tp = np.cumsum(w * (y == 1), axis=1)[:, last]
    fp = np.cumsum(w * (y == 0), axis=1)[:, last]
    precision = tp / np.maximum(tp + fp, 1e-12)
    recall_step = np.diff(tp, axis=1, prepend=0) / np.maximum(tp[:, -1:], 1e-12)
    return np.where((tp[:, -1] > 0) & (fp[:, -1] > 0), (precision * recall_step).sum(axis=1), np.nan)


def weighted_confusion(y_true: np.ndarray, y_pred: np.ndarray, k: int, w: np.ndarray) -> np.ndarray:
    """(B, k, k) confusion matrices (rows true, columns predicted)."""
    cell = np.eye(k * k)[y_true * k + y_pred]
    return (w @ cell).reshape(-1, k, k)


def weighted_macro_auc(y: np.ndarray, probs: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Mean one-vs-rest ROC-AUC over the classes defined in each weight row (MedMNIST's multi-class AUC) -> (B,)."""
    return defined_mean(np.stack([weighted_auc((y == k).astype(int), probs[:, k], w) for k in range(probs.shape[1])], axis=1))


def confusion_scores(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy, balanced accuracy and macro-F1 from (B, k, k) confusion matrices, as scikit-learn defines them.

    Macro-F1: the mean F1 over the classes in the truth or the predictions (f1_score's default labels).
    Balanced accuracy: the mean recall over the classes in the truth (balanced_accuracy_score); with two classes,
    (sensitivity + specificity) / 2, undefined (NaN) unless both classes occur.
    """
    tp = np.diagonal(cm, axis1=1, axis2=2)
    true, pred = cm.sum(axis=2), cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(true > 0, tp / true, np.nan)
        f1 = np.where(true + pred > 0, 2 * tp / (true + pred), np.nan)
    return {"accuracy": tp.sum(axis=1) / cm.sum(axis=(1, 2)),
            "balanced_accuracy": recall.mean(axis=1) if cm.shape[1] == 2 else defined_mean(recall), "macro_f1": defined_mean(f1)}


def defined_mean(values: np.ndarray) -> np.ndarray:
    """Mean of each row over its defined (non-NaN) entries; NaN where none is (without nanmean's warning)."""
    defined = ~np.isnan(values)
    return np.where(defined.any(axis=1), np.where(defined, values, 0).sum(axis=1) / np.maximum(defined.sum(axis=1), 1), np.nan)


def interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    if np.isnan(values).all():
        return float("nan"), float("nan")
    lo, hi = np.nanquantile(values, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def decision_figures(d: dict, w: np.ndarray, on_classes: bool, pr_auc: bool = True) -> dict[str, np.ndarray]:
    """Every figure of one model's decisions under each weight row w (B, N).

    `d` holds report.decisions' arrays. Accuracy, balanced accuracy and macro-F1 are of the task's classes
    when `on_classes`, else of the malignant call; sensitivity and specificity are of the malignant call;
    ROC-AUC and PR-AUC of the malignant score.
    """
    y, y_pred, k = (d["y"], d["y_pred"], d["probs"].shape[1]) if on_classes else (d["y_mal"], d["malignant_pred"], 2)
    values = confusion_scores(weighted_confusion(y, y_pred, k, w))
    malignant = weighted_confusion(d["y_mal"], d["malignant_pred"], 2, w)
    with np.errstate(invalid="ignore", divide="ignore"):
        values["sensitivity"] = malignant[:, 1, 1] / malignant[:, 1].sum(axis=1)
        values["specificity"] = malignant[:, 0, 0] / malignant[:, 0].sum(axis=1)
    values["roc_auc"] = weighted_auc(d["y_mal"], d["score"], w)
    if pr_auc:
        values["pr_auc"] = weighted_average_precision(d["y_mal"], d["score"], w)
    return values
