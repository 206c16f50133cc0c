"""PNG figures for an eval folder (matplotlib, Agg backend), titled with model and data set."""

from pathlib import Path

import numpy as np

from dermcli.io import atomic_path


def _figure(ncols: int = 1):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=(6 * ncols, 5), squeeze=False)
    return plt, fig, axes[0]


def _save(plt, fig, path: Path) -> Path:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def confusion_plot(path: Path, cm: np.ndarray, names: list[str], title: str) -> Path:
    plt, fig, (counts_ax, norm_ax) = _figure(2)
    normalised = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    for ax, matrix, kind, fmt in ((counts_ax, cm, "counts", "d"), (norm_ax, normalised, "row-normalised", ".2f")):
        ax.imshow(matrix, cmap="Blues")
        ax.set(xticks=range(len(names)), yticks=range(len(names)), xticklabels=names, yticklabels=names,
               xlabel="predicted", ylabel="true", title=f"{title}\nconfusion matrix ({kind})")
        for i in range(len(names)):
            for j in range(len(names)):
                ax.text(j, i, format(matrix[i, j], fmt), ha="center", va="center",
                        color="white" if matrix[i, j] > matrix.max() / 2 else "black", fontsize=8)
    return _save(plt, fig, path)


def curves_plot(path: Path, y: np.ndarray, score: np.ndarray, threshold: float, r: dict, title: str) -> Path:
    from sklearn.metrics import precision_recall_curve, roc_curve

    plt, fig, (roc_ax, pr_ax) = _figure(2)
    fpr, tpr, _ = roc_curve(y, score)
    precision, recall, _ = precision_recall_curve(y, score)
    b = r["binary"]
    roc_ax.plot(fpr, tpr, label=f"ROC-AUC {b['roc_auc']:.3f}")
    roc_ax.plot([0, 1], [0, 1], ":", color="grey")
    roc_ax.plot(1 - b["specificity"], b["recall"], "o", color="red", label=f"threshold {threshold:.3f}")
    roc_ax.set(xlabel="1 - specificity", ylabel="sensitivity", title=f"{title}\nROC, malignant vs benign")
    pr_ax.plot(recall, precision, label=f"PR-AUC {b['pr_auc']:.3f}")
    pr_ax.axhline(y.mean(), ls=":", color="grey", label=f"prevalence {y.mean():.3f}")
    pr_ax.plot(b["recall"], b["precision"], "o", color="red", label=f"threshold {threshold:.3f}")
    pr_ax.set(xlabel="recall (sensitivity)", ylabel="precision (PPV)", title=f"{title}\nprecision-recall, malignant vs benign")
    for ax in (roc_ax, pr_ax):
        ax.legend(loc="lower right" if ax is roc_ax else "upper right")
    return _save(plt, fig, path)


def reliability_plot(path: Path, y: np.ndarray, probs: np.ndarray, ece: float, title: str, bins: int = 15) -> Path:
    plt, fig, (ax,) = _figure()
    confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == y
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    centres = (np.arange(bins) + 0.5) / bins
    accuracy = [correct[which == b].mean() if (which == b).any() else np.nan for b in range(bins)]
    ax.bar(centres, accuracy, width=1 / bins, edgecolor="black", alpha=0.7, label="accuracy in bin")
    ax.plot([0, 1], [0, 1], ":", color="grey", label="perfect calibration")
    ax.set(xlabel="confidence (top-class probability)", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1),
           title=f"{title}\nreliability diagram, ECE {ece:.3f}")
    ax.legend(loc="upper left")
    return _save(plt, fig, path)


def training_curves_plot(path: Path, history_csv: Path, title: str) -> Path:
    import pandas as pd

    history = pd.read_csv(history_csv)
    plt, fig, (loss_ax, metric_ax) = _figure(2)
    loss_ax.plot(history["epoch"], history["train_loss"], label="train loss")
    loss_ax.plot(history["epoch"], history["val_loss"], label="val loss")
    loss_ax.set(xlabel="epoch", ylabel="loss", title=f"{title}\nlosses")
    for column in history.columns:
        if column.startswith("val_") and column != "val_loss":
            metric_ax.plot(history["epoch"], history[column], label=column)
    metric_ax.set(xlabel="epoch", ylabel="validation metric", title=f"{title}\nvalidation metrics")
    for ax in (loss_ax, metric_ax):
        ax.legend()
    return _save(plt, fig, path)


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
