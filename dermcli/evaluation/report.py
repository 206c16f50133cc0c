"""Every report is computed from predictions.csv + eval_info.json, so `report DIR` needs no model."""

import json
from pathlib import Path

import numpy as np
import pandas as pd

from dermcli.core.errors import DermcliError
from dermcli.core.files import write_text
from dermcli.core.labels import has_binary_view, malignant_score, malignant_targets, score_label
from dermcli.data.tables import read_csv
from dermcli.evaluation import bootstrap
from dermcli.evaluation.evaluate import EVAL_INFO, PREDICTIONS
from dermcli.evaluation.formatting import fmt, num, ood_pass_rate, overlap_sentence
from dermcli.evaluation.metrics import (
    auc_above_sensitivity,
    binary_summary,
    expected_calibration_error,
    multiclass_summary,
    operating_points,
    ovr_auc,
    ovr_auc_above_sensitivity,
    per_class_scores,
)
from dermcli.evaluation.plots import write_plots
from dermcli.evaluation.subgroups import write_subgroups
from dermcli.evaluation.tracking import log_eval
from dermcli.models.outputs import probabilities

BINARY_ROWS = [("Accuracy", "accuracy"), ("ROC-AUC", "roc_auc"), ("PR-AUC", "pr_auc"), ("Precision", "precision"), ("Recall", "recall"),
               ("Loss", "loss"), ("Specificity", "specificity"), ("NPV", "npv"), ("F1", "f1"), ("Balanced accuracy", "balanced_accuracy"),
               ("AUC above 80% sensitivity (ISIC)", "auc_above_80")]
# ISIC 2018 Task 3 ranks by "balanced multiclass accuracy": the mean recall over the seven classes, i.e. balanced accuracy.
MULTICLASS_ROWS = [("Accuracy", "accuracy"), ("Balanced multiclass accuracy (ISIC)", "balanced_accuracy"), ("Macro F1", "macro_f1"),
                   ("Weighted F1", "weighted_f1"), ("Macro ROC-AUC (one-vs-rest)", "macro_auc"), ("Loss", "loss")]
CLASS_FIGURES = ("accuracy", "balanced_accuracy", "macro_f1", "macro_auc")  # of the task's classes; the other intervals of the malignant view
OPERATING_POINT = ("sensitivity", "specificity", "ppv", "npv", "f1")


def load_eval(folder: Path) -> tuple[dict, pd.DataFrame]:
    folder = Path(folder)
    for name in (PREDICTIONS, EVAL_INFO):
        if not (folder / name).is_file():
            raise DermcliError(f"{folder}: no {name} (run `dermcli eval ... --out {folder}` first)")
    try:
        info = json.loads((folder / EVAL_INFO).read_text())
    except json.JSONDecodeError:
        raise DermcliError(f"{folder / EVAL_INFO}: not valid JSON") from None
    predictions = read_csv(folder / PREDICTIONS)
    needed = ["image_id", "lesion_id", "label"] + [f"p_{c}" for c in info["class_names"]]
    absent = [c for c in needed if c not in predictions.columns]
    if absent:
        raise DermcliError(f"{folder / PREDICTIONS}: missing column(s) {', '.join(absent)}")
    return info, predictions


def untempered(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities before temperature scaling: T * log p are logits up to a per-row constant."""
    return probabilities(np.log(np.clip(probs, 1e-12, 1)) * temperature if probs.shape[1] > 2
                         else (np.log(np.clip(probs[:, 1], 1e-12, 1)) - np.log(np.clip(probs[:, 0], 1e-12, 1))) * temperature)


def decisions(info: dict, predictions: pd.DataFrame) -> dict[str, np.ndarray]:
    """Arrays of an eval: y and y_pred (task classes), probs, y_mal and score (malignant view), and
    malignant_pred (the malignant call at the model's threshold)."""
    names = info["class_names"]
    y = predictions["label"].map({c: i for i, c in enumerate(names)}).to_numpy()
    if np.isnan(y.astype(float)).any():
        raise DermcliError(f"{PREDICTIONS}: a label is not one of {', '.join(names)}")
    y = y.astype(int)
    probs = predictions[[f"p_{c}" for c in names]].astype(float).to_numpy()
    multiclass = info["task"] == "multiclass"
    # a model without a benign/malignant view scores 0 for all: its binary figures come out undefined, and are not shown
    score = malignant_score(probs, info) if has_binary_view(info) else np.zeros(len(y))
    malignant_pred = (score >= (info["threshold"] if has_binary_view(info) else 0.5)).astype(int)
    return {"y": y, "probs": probs, "y_mal": malignant_targets(y, info), "score": score,
            "malignant_pred": malignant_pred, "y_pred": probs.argmax(axis=1) if multiclass else malignant_pred}


def compute(info: dict, predictions: pd.DataFrame, resamples: int = 1000, seed: int = 0) -> dict:
    names = info["class_names"]
    d = decisions(info, predictions)
    y, probs, y_mal, score, y_pred = d["y"], d["probs"], d["y_mal"], d["score"], d["y_pred"]
    multiclass = info["task"] == "multiclass"
    binary = {**binary_summary(y_mal, score, info["threshold"] if has_binary_view(info) else 0.5), "auc_above_80": auc_above_sensitivity(y_mal, score, 0.80)}
    result = {"info": {k: v for k, v in info.items() if k != "config"}, "binary": binary,
              "operating_points": operating_points(y_mal, score),
              "calibration": {"bins": 15, "ece_before": expected_calibration_error(y, untempered(probs, info["temperature"])),
                              "ece_after": expected_calibration_error(y, probs), "temperature": info["temperature"]}}
    if multiclass:
        result["multiclass"] = multiclass_summary(y, probs)
        result["per_class_auc"] = dict(zip(names, ovr_auc(y, probs)))
        result["per_class_auc_above_80"] = dict(zip(names, ovr_auc_above_sensitivity(y, probs, 0.80)))
    # One function per figure: row 0 (every image once) gives the point, the lesion resamples its interval.
    w = np.vstack([np.ones((1, len(y))), bootstrap.group_weights(predictions["lesion_id"].to_numpy(), resamples, seed)])
    # decision_figures' sensitivity is the binary table's recall
    figures = {("recall" if k == "sensitivity" else k): v for k, v in bootstrap.decision_figures(d, w, on_classes=multiclass).items()}
    if multiclass:
        figures["macro_auc"] = bootstrap.weighted_macro_auc(y, probs, w)
    head = result.get("multiclass", binary)
    for key, values in figures.items():
        (head if key in CLASS_FIGURES else binary)[key] = float(values[0])
    if not has_binary_view(info):  # no grouping: every benign/malignant figure is undefined, not made up from a zero score
        result["binary"] = binary = {k: float("nan") for k in binary}
        result["operating_points"] = []
        figures = {k: (v if k in CLASS_FIGURES or k == "macro_auc" else v * np.nan) for k, v in figures.items()}
    result["intervals"] = {k: bootstrap.interval(v[1:]) for k, v in figures.items()}
    result["intervals_info"] = {"level": 0.95, "resamples": resamples, "seed": seed, "unit": "lesion"}
    if "ood_score" in predictions.columns and "ood_threshold" in info:
        result["unusual"] = {"threshold": info["ood_threshold"], "pass_rate": ood_pass_rate(info), "fraction": float(np.mean(predictions["ood_score"].astype(float).to_numpy() > info["ood_threshold"]))}
    result["confusion"] = np.bincount(y * len(names) + y_pred, minlength=len(names) ** 2).reshape(len(names), -1).tolist()
    result["y_pred"], result["y"], result["score"], result["y_mal"], result["decisions"] = y_pred, y, score, y_mal, d
    return result


def json_text(data) -> str:
    """Indented JSON with non-finite floats as null: JSON has no NaN."""
    return json.dumps(_finite_or_none(data), indent=2, default=float, allow_nan=False) + "\n"


def _finite_or_none(v):
    if isinstance(v, dict):
        return {k: _finite_or_none(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite_or_none(x) for x in v]
    if isinstance(v, (float, np.floating)):
        return float(v) if np.isfinite(v) else None
    return v


def table_rows(r: dict) -> dict[str, list[tuple[str, str]]]:
    """Titled tables of (metric, value with interval) rows, shared by the console and metrics.md."""
    ci = r["intervals"]
    tables = {}
    if "multiclass" in r:
        title = f"{len(r['per_class_auc'])}-class"
        tables[title] = [(label, fmt(r["multiclass"][key], ci.get(key))) for label, key in MULTICLASS_ROWS]
        tables[title] += [(f"ROC-AUC {c}", fmt(a)) for c, a in r["per_class_auc"].items()]
        tables[title] += [(f"AUC above 80% sensitivity {c} (ISIC)", fmt(a)) for c, a in r["per_class_auc_above_80"].items()]
    if not has_binary_view(r["info"]):
        return tables
    title = "Malignant vs benign" + (f" ({score_label(r['info'])})" if "multiclass" in r else "")
    # A 7-class model's intervals for accuracy etc. are of its 7-class figures; only these are of the binary view.
    shared = tuple(k for k in ci if k not in CLASS_FIGURES) if "multiclass" in r else tuple(ci)
    tables[f"{title} at threshold {r['binary']['threshold']:.4f}"] = [
        (label, fmt(r["binary"][key], ci.get(key) if key in shared else None)) for label, key in BINARY_ROWS]
    return tables


def classification_report_text(r: dict, names: list[str]) -> str:
    ci = r["intervals"]
    head = r.get("multiclass", r["binary"])
    cm = np.array(r["confusion"])
    lines = [f"Accuracy: {fmt(head['accuracy'], ci['accuracy'])}",
             f"Balanced {'multiclass ' if 'multiclass' in r else ''}accuracy: {fmt(head['balanced_accuracy'], ci['balanced_accuracy'])}",
             f"Macro F1: {fmt(head['macro_f1'], ci['macro_f1'])}",
             f"Weighted F1: {fmt(np.average(per_class_scores(cm)['f1'], weights=cm.sum(axis=1)))}", "",
             sklearn_style_report(cm, names), "Confusion matrix (rows: true, columns: predicted)"]
    width = max(len(n) for n in names) + 2
    lines.append(" " * width + "".join(f"{n:>{width}}" for n in names))
    lines += [f"{n:<{width}}" + "".join(f"{v:>{width}}" for v in row) for n, row in zip(names, r["confusion"])]
    return "\n".join(lines) + "\n"


def sklearn_style_report(cm: np.ndarray, names: list[str], digits: int = 4) -> str:
    """sklearn's classification_report text (zero_division=0) from a confusion matrix, character for
    character (a test holds the two side by side), without importing sklearn's 0.8 s."""
    scores = per_class_scores(cm)
    width = max(max(len(n) for n in names), len("weighted avg"), digits)
    row = "{:>{width}s} " + " {:>9.{digits}f}" * 3 + " {:>9}\n"
    text = ("{:>{width}s} " + " {:>9}" * 4).format("", "precision", "recall", "f1-score", "support", width=width) + "\n\n"
    for k, name in enumerate(names):
        text += row.format(name, scores["precision"][k], scores["recall"][k], scores["f1"][k], int(scores["support"][k]), width=width, digits=digits)
    total = int(cm.sum())
    text += "\n" + ("{:>{width}s} " + " {:>9.{digits}}" * 2 + " {:>9.{digits}f} {:>9}\n").format(
        "accuracy", "", "", np.trace(cm) / total, total, width=width, digits=digits)
    weights = scores["support"] / max(total, 1)
    for label, average in (("macro avg", lambda v: v.mean()), ("weighted avg", lambda v: (v * weights).sum())):
        text += row.format(label, *(average(scores[k]) for k in ("precision", "recall", "f1")), total, width=width, digits=digits)
    return text


def markdown(r: dict, info: dict) -> str:
    lines = [f"# {info['model']} ({info['task']}) on {info['data']} — split `{info['split']}`, {info['images']} images", "",
             f"95% intervals: bootstrap over {'lesions' if info['split'] != 'all' else 'lesion groups'}, "
             f"{r['intervals_info']['resamples']} resamples, seed {r['intervals_info']['seed']}." + overlap_sentence(info), ""]
    if info.get("unknown_labels"):
        lines += [unknown_labels_sentence(info), ""]
    for title, rows in table_rows(r).items():
        lines += [f"## {title}", "", "| Metric | Value |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows] + [""]
    if has_binary_view(info):
        lines += operating_points_section(r, info)
    lines += ["## Calibration", "", f"Expected calibration error (15 bins): {r['calibration']['ece_before']:.4f} before, "
              f"{r['calibration']['ece_after']:.4f} after temperature scaling (T = {r['calibration']['temperature']:.3f}, fitted on validation).", ""]
    if "unusual" in r:
        lines += ["## Unusual images", "", unusual_line(r["unusual"]), ""]
    return "\n".join(lines)


def unknown_labels_sentence(info: dict) -> str:
    counts = info["unknown_labels"]
    return (f"{sum(counts.values())} images with labels the model does not know ({', '.join(f'{k}: {v}' for k, v in counts.items())}) "
            f"are left out of these figures" + ("; the malignant view of every image with a known grouping is in `malignant_view/`."
                                                 if info["task"] == "multiclass" and has_binary_view(info) else "."))


def operating_points_section(r: dict, info: dict) -> list[str]:
    lines = ["## Operating points (malignant vs benign, thresholds chosen on this set for reference)", "",
              "| Target sensitivity | Threshold | Sensitivity | Specificity | PPV | NPV | F1 |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {p['target_sensitivity']:.2f} | {p['threshold']:.4f} | " + " | ".join(num(p[k]) for k in OPERATING_POINT) + " |"
              for p in r["operating_points"]]
    b = r["binary"]
    lines += [f"| **{info['threshold_source']} threshold** | **{b['threshold']:.4f}** | "
              + " | ".join(f"**{num(b[k])}**" for k in ("recall", "specificity", "precision", "npv", "f1")) + " |", ""]
    return lines


def unusual_line(u: dict) -> str:
    return (f"Flagged as unlike the training images: {u['fraction']:.1%} (distance above {u['threshold']:.2f}, "
            f"the validation split's {u['pass_rate']:.1%} quantile).")


def write_reports(folder: Path, plots: bool = True) -> dict:
    """(Re)write classification_report.txt, metrics.md, metrics.json (and the plots) in `folder`."""
    folder = Path(folder)
    info, predictions = load_eval(folder)
    r = compute(info, predictions)
    r["classification_report"] = classification_report_text(r, info["class_names"])
    write_text(folder / "classification_report.txt", r["classification_report"])
    write_text(folder / "metrics.md", markdown(r, info))
    public = {k: v for k, v in r.items() if k not in ("y_pred", "y", "score", "y_mal", "decisions", "classification_report")}
    write_text(folder / "metrics.json", json_text(public))

    r["subgroups"] = write_subgroups(folder, info, predictions, r["decisions"], r["binary"]["roc_auc"], plots)
    if plots:
        r["plots"] = write_plots(folder, info, r, probs=r["decisions"]["probs"])
    r["tables"] = table_rows(r)
    log_eval(folder)  # into the run's TensorBoard folder and MLflow run, where it asked for them
    return r
