"""Metric functions on arrays; no I/O, no torch.

Shapes: y_true (N,) int class indices; probs (N, K) probabilities whose rows sum to 1;
for binary metrics y_true (N,) in {0, 1} and score (N,) the positive-class probability.
"""


import numpy as np

from dermcli.evaluation.bootstrap import confusion_scores, weighted_auc, weighted_average_precision, weighted_macro_auc
from dermcli.models.outputs import probabilities

EPS = 1e-7


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> np.ndarray:
    """(k, k) counts, rows true, columns predicted."""
    return np.bincount(np.asarray(y_true) * k + np.asarray(y_pred), minlength=k * k).reshape(k, k)


def per_class_scores(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall, F1 and support per class from a confusion matrix; 0 where undefined (sklearn's
    zero_division=0)."""
    tp, true, pred = np.diag(cm).astype(float), cm.sum(axis=1).astype(float), cm.sum(axis=0).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {"precision": np.where(pred > 0, tp / pred, 0.0), "recall": np.where(true > 0, tp / true, 0.0),
                "f1": np.where(true + pred > 0, 2 * tp / (true + pred), 0.0), "support": cm.sum(axis=1)}


def multiclass_summary(y_true: np.ndarray, probs: np.ndarray) -> dict:
    """Accuracy, balanced accuracy and macro-F1 as bootstrap.confusion_scores defines them (also for the intervals)."""

    cm = confusion_matrix(y_true, probs.argmax(axis=1), probs.shape[1])
    scores = per_class_scores(cm)
    return {
        **{k: float(v[0]) for k, v in confusion_scores(cm[None]).items()},
        "weighted_f1": float(np.average(scores["f1"], weights=scores["support"])),
        "macro_auc": macro_ovr_auc(y_true, probs),
        "loss": nll(y_true, probs),
    }


def roc_auc(y_true: np.ndarray, score: np.ndarray) -> float:
    """ROC-AUC, ties counting half (equal to sklearn's roc_auc_score); NaN without both classes."""

    return float(weighted_auc(np.asarray(y_true), np.asarray(score), np.ones((1, len(score))))[0])


def average_precision(y_true: np.ndarray, score: np.ndarray) -> float:
    """Step-wise PR-AUC (equal to sklearn's average_precision_score); NaN without both classes."""

    return float(weighted_average_precision(np.asarray(y_true), np.asarray(score), np.ones((1, len(score))))[0])


def curve_counts(y_true: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """True and false positives at each distinct threshold, from the highest score down (sklearn's
    _binary_clf_curve), with a leading (0, 0)."""
    order = np.argsort(-score, kind="stable")
    y, s = np.asarray(y_true)[order], np.asarray(score)[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tps = np.cumsum(y)[last]
    return np.r_[0, tps], np.r_[0, last + 1 - tps]


def roc_points(y_true: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate) at every distinct threshold, from (0, 0) to (1, 1)."""
    tps, fps = curve_counts(y_true, score)
    return fps / max(fps[-1], 1), tps / max(tps[-1], 1)


def pr_points(y_true: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision) at every distinct threshold, highest threshold first."""
    tps, fps = curve_counts(y_true, score)
    tps, fps = tps[1:], fps[1:]
    return tps / max(tps[-1], 1), tps / np.maximum(tps + fps, 1)


def ovr_auc(y_true: np.ndarray, probs: np.ndarray) -> list[float | None]:
    """One-vs-rest ROC-AUC per class (None where the class is absent or alone), as MedMNIST computes it."""
    out = []
    for k in range(probs.shape[1]):
        positives = y_true == k
        out.append(roc_auc(positives.astype(int), probs[:, k]) if 0 < positives.sum() < len(y_true) else None)
    return out


def macro_ovr_auc(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Mean of the per-class one-vs-rest AUCs over classes present (MedMNIST's multi-class AUC)."""

    return float(weighted_macro_auc(np.asarray(y_true), probs, np.ones((1, len(y_true))))[0])


def binary_summary(y_true: np.ndarray, score: np.ndarray, threshold: float) -> dict:
    """The binary card's table plus specificity, NPV, F1 and balanced accuracy at `threshold`; a ratio whose
    denominator is 0 (no malignant lesion for the recall, no malignant call for the precision...) is NaN."""

    cm = confusion_matrix(y_true, (score >= threshold).astype(int), 2)
    (tn, fp), (fn, tp) = cm.tolist()
    scores = confusion_scores(cm[None])
    p = np.clip(score, EPS, 1 - EPS)
    return {
        "accuracy": float(scores["accuracy"][0]),
        "roc_auc": roc_auc(y_true, score),
        "pr_auc": average_precision(y_true, score),
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "npv": _ratio(tn, tn + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "balanced_accuracy": float(scores["balanced_accuracy"][0]),
        "loss": float(-np.mean(y_true * np.log(p) + (1 - y_true) * np.log(1 - p))),
        "threshold": float(threshold),
        "tp": tp, "fp": fp, "tn": tn, "fn": fn,
    }


def _ratio(a: int, b: int) -> float:
    return a / b if b else float("nan")


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


def nll(y_true: np.ndarray, probs: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(y_true)), y_true], EPS, 1))))


def _golden_section_minimum(f, a: float, b: float, tol: float) -> float:
    """x in [a, b] minimising f, to within tol, for f with a single minimum in [a, b]."""
    r = (np.sqrt(5) - 1) / 2
    c, d = b - r * (b - a), a + r * (b - a)
    fc, fd = f(c), f(d)
    while b - a > tol:
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - r * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + r * (b - a)
            fd = f(d)
    return (a + b) / 2


TEMPERATURE_RANGE = (0.01, 100.0)  # searched by fit_temperature, wide enough that a fitted T never sits at an edge by accident


def fit_temperature(logits: np.ndarray | list[np.ndarray], y_true: np.ndarray) -> float:
    """Temperature T minimising NLL of probabilities(logits / T) (a 1-D search over log T). Given the logits
    of several views of the same images (test-time augmentation), of the mean of their probabilities.

    A coarse grid over TEMPERATURE_RANGE finds the best region, golden-section search refines it to 1e-4 in
    log T (finer than a 161-point grid over 0.2-5). Callers say so when the optimum sits at an edge
    (temperature_note): a clamped temperature would otherwise pass for a fitted one."""
    views = logits if isinstance(logits, list) else [logits]

    def loss(log_t: float) -> float:
        return nll(y_true, np.mean([probabilities(v, np.exp(log_t)) for v in views], axis=0))

    grid = np.linspace(*np.log(TEMPERATURE_RANGE), 81)
    i = int(np.argmin([loss(x) for x in grid]))
    return float(np.exp(_golden_section_minimum(loss, grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)], 1e-4)))


def calibrated_mean(views: list[np.ndarray], y_true: np.ndarray) -> tuple[float, np.ndarray]:
    """The temperature fitted to the views' logits of the same images, and the mean of their probabilities at it:
    the calibration an ensemble (or a model with test-time augmentation) is shipped with."""
    temperature = fit_temperature(views, y_true)
    return temperature, np.mean([probabilities(v, temperature) for v in views], axis=0)


def temperature_note(temperature: float) -> str | None:
    """A warning when a fitted temperature sits at an edge of its search range, else None."""
    low, high = TEMPERATURE_RANGE
    if not low * 1.001 < temperature < high / 1.001:
        return (f"warning: the fitted temperature {temperature:.3g} is at the edge of its search range ({low:g} to {high:g}): "
                "the validation logits are far off in scale, or the validation set is separated perfectly")
    return None


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


def auc_above_sensitivity(y_true: np.ndarray, score: np.ndarray, sensitivity: float = 0.80) -> float:
    """ISIC's "AUC, Sens > 80%": the raw area under the ROC curve from the point where it first reaches
    `sensitivity` (interpolated) to (1, 1), without McClish's correction, as the ISIC challenge scoring
    computes it. 1 for a perfect ranking, about (1 - s^2) / 2 for a random one; NaN without both classes."""
    if not 0 < y_true.sum() < len(y_true):
        return float("nan")
    fpr, tpr = roc_points(y_true, score)
    i = int(np.searchsorted(tpr, sensitivity, side="left"))  # tpr[i - 1] < sensitivity <= tpr[i]
    fpr_at = np.interp(sensitivity, tpr[i - 1:i + 1], fpr[i - 1:i + 1])
    x, y = np.r_[fpr_at, fpr[i:]], np.r_[sensitivity, tpr[i:]]
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2))  # trapezoids


def ovr_auc_above_sensitivity(y_true: np.ndarray, probs: np.ndarray, sensitivity: float = 0.80) -> list[float | None]:
    """auc_above_sensitivity of each class one-vs-rest (None where the class is absent or alone)."""
    out = []
    for k in range(probs.shape[1]):
        positives = (y_true == k).astype(int)
        out.append(auc_above_sensitivity(positives, probs[:, k], sensitivity) if 0 < positives.sum() < len(y_true) else None)
    return out
