"""PNG figures for an eval folder (matplotlib, Agg backend), titled with model and data set."""

from pathlib import Path

import numpy as np

from dermcli.core.figures import axes_figure, save_png
from dermcli.evaluation.formatting import num
from dermcli.evaluation.metrics import average_precision, pr_points, roc_auc, roc_points


def confusion_plot(path: Path, cm: np.ndarray, names: list[str], title: str) -> Path:
    fig, (counts_ax, norm_ax) = axes_figure(2)
    normalised = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    for ax, matrix, kind, fmt in ((counts_ax, cm, "counts", "d"), (norm_ax, normalised, "row-normalised", ".2f")):
        ax.imshow(matrix, cmap="Blues")
        ax.set(xticks=range(len(names)), yticks=range(len(names)), xticklabels=names, yticklabels=names,
               xlabel="predicted", ylabel="true", title=f"{title}\nconfusion matrix ({kind})")
        for i in range(len(names)):
            for j in range(len(names)):
                ax.text(j, i, format(matrix[i, j], fmt), ha="center", va="center",
                        color="white" if matrix[i, j] > matrix.max() / 2 else "black", fontsize=8)
    return save_png(fig, path)


def _label_roc_pr(roc_ax, pr_ax, title: str) -> None:
    roc_ax.set(xlabel="1 - specificity", ylabel="sensitivity", title=f"{title}\nROC, malignant vs benign")
    pr_ax.set(xlabel="recall (sensitivity)", ylabel="precision (PPV)", title=f"{title}\nprecision-recall, malignant vs benign")


def curves_plot(path: Path, y: np.ndarray, score: np.ndarray, threshold: float, r: dict, title: str) -> Path:
    fig, (roc_ax, pr_ax) = axes_figure(2)
    fpr, tpr = roc_points(y, score)
    recall, precision = pr_points(y, score)
    b = r["binary"]
    roc_ax.plot(fpr, tpr, label=f"ROC-AUC {b['roc_auc']:.3f}")
    roc_ax.plot([0, 1], [0, 1], ":", color="grey")
    roc_ax.plot(1 - b["specificity"], b["recall"], "o", color="red", label=f"threshold {threshold:.3f}")
    pr_ax.plot(recall, precision, label=f"PR-AUC {b['pr_auc']:.3f}")
    pr_ax.axhline(y.mean(), ls=":", color="grey", label=f"prevalence {y.mean():.3f}")
    pr_ax.plot(b["recall"], b["precision"], "o", color="red", label=f"threshold {threshold:.3f}")
    _label_roc_pr(roc_ax, pr_ax, title)
    for ax in (roc_ax, pr_ax):
        ax.legend(loc="lower right" if ax is roc_ax else "upper right")
    return save_png(fig, path)


def overlaid_curves_plot(path: Path, models: list[tuple[str, np.ndarray, np.ndarray]], title: str) -> Path:
    """ROC and PR curves of several models' malignant scores on the same images: (name, y, score) each."""

    fig, (roc_ax, pr_ax) = axes_figure(2)
    for name, y, score in models:
        roc_ax.plot(*roc_points(y, score), label=f"{name} (ROC-AUC {num(roc_auc(y, score))})")
        pr_ax.plot(*pr_points(y, score), label=f"{name} (PR-AUC {num(average_precision(y, score))})")
    roc_ax.plot([0, 1], [0, 1], ":", color="grey")
    pr_ax.axhline(models[0][1].mean(), ls=":", color="grey", label="prevalence")
    _label_roc_pr(roc_ax, pr_ax, title)
    roc_ax.legend(loc="lower right", fontsize=8)
    pr_ax.legend(loc="upper right", fontsize=8)
    return save_png(fig, path)


def forest_plot(path: Path, rows: list[dict], overall: float, title: str) -> Path:
    """Malignant ROC-AUC with its interval per subgroup (rows: label, auc, low, high, too_small), overall AUC dashed."""

    height = 0.22 * len(rows) + 1.4
    fig, (ax,) = axes_figure(size=(7, height), left=0.33, bottom=0.55 / height, top=1 - 0.55 / height)
    ys = np.arange(len(rows))[::-1]
    auc, low, high = (np.array([r[k] for r in rows], dtype=float) for k in ("auc", "low", "high"))
    small = np.array([r["too_small"] for r in rows])
    for chosen, colour in ((~small, "black"), (small, "grey")):  # one errorbar call per colour: hundreds of artists fewer
        ax.errorbar(auc[chosen], ys[chosen], xerr=np.nan_to_num([auc[chosen] - low[chosen], high[chosen] - auc[chosen]]),
                    fmt="o", color=colour, capsize=2, markersize=4)
    ax.axvline(overall, ls="--", color="red", label=f"all images {num(overall)}")
    ax.set(yticks=ys, yticklabels=[r["label"] + (" (too small)" if r["too_small"] else "") for r in rows], xlim=(min(0.4, np.nanmin(low, initial=1) - 0.02), 1.02),
           xlabel="malignant ROC-AUC (95% lesion-level bootstrap interval)", title=f"{title}\nsubgroups")
    ax.tick_params(axis="y", labelsize=7)
    ax.legend(loc="lower left", fontsize=8)
    return save_png(fig, path)


def reliability_plot(path: Path, y: np.ndarray, probs: np.ndarray, ece: float, title: str, bins: int = 15) -> Path:
    fig, (ax,) = axes_figure()
    confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == y
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    centres = (np.arange(bins) + 0.5) / bins
    accuracy = [correct[which == b].mean() if (which == b).any() else np.nan for b in range(bins)]
    ax.bar(centres, accuracy, width=1 / bins, edgecolor="black", alpha=0.7, label="accuracy in bin")
    ax.plot([0, 1], [0, 1], ":", color="grey", label="perfect calibration")
    ax.set(xlabel="confidence (top-class probability)", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1),
           title=f"{title}\nreliability diagram, ECE {ece:.3f}")
    ax.legend(loc="upper left")
    return save_png(fig, path)


def training_curves_plot(path: Path, history_csv: Path, title: str) -> Path:
    import pandas as pd

    history = pd.read_csv(history_csv)
    fig, (loss_ax, metric_ax) = axes_figure(2)
    loss_ax.plot(history["epoch"], history["train_loss"], label="train loss")
    loss_ax.plot(history["epoch"], history["val_loss"], label="val loss")
    loss_ax.set(xlabel="epoch", ylabel="loss", title=f"{title}\nlosses")
    for column in history.columns:
        if column.startswith("val_") and column != "val_loss":
            metric_ax.plot(history["epoch"], history[column], label=column)
    metric_ax.set(xlabel="epoch", ylabel="validation metric", title=f"{title}\nvalidation metrics")
    for ax in (loss_ax, metric_ax):
        ax.legend()
    return save_png(fig, path)


def write_plots(folder: Path, info: dict, r: dict, probs: np.ndarray) -> list[Path]:
    title = f"{info['model']} ({info['task']}) — {Path(info['data']).name} [{info['split']}]"
    out = [confusion_plot(folder / "confusion_matrix.png", np.array(r["confusion"]), info["class_names"], title),
           reliability_plot(folder / "reliability.png", r["y"], probs, r["calibration"]["ece_after"], title)]
    if 0 < r["y_mal"].sum() < len(r["y_mal"]):
        out.append(curves_plot(folder / "roc_pr.png", r["y_mal"], r["score"], r["binary"]["threshold"], r, title))
    history = Path(info["run_dir"]) / "history.csv"
    if history.is_file():
        out.append(training_curves_plot(folder / "training_curves.png", history, title))
    return out
