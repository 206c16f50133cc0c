"""Subgroup audit of an eval: does the model work as well for every sex, age band, body site and way of
diagnosis? One row per subgroup, every figure with a lesion-level bootstrap interval; small groups are
marked, never dropped."""

from pathlib import Path

import numpy as np
import pandas as pd

from dermcli.core.files import write_text
from dermcli.core.labels import has_binary_view
from dermcli.data.tables import METADATA
from dermcli.evaluation import bootstrap
from dermcli.evaluation.formatting import fmt
from dermcli.evaluation.plots import forest_plot

AGE_BANDS = ((0, 30, "<30"), (30, 45, "30–44"), (45, 60, "45–59"), (60, 75, "60–74"), (75, np.inf, "≥75"))
MIN_IMAGES = 30  # below this, or with 1 to MIN_CLASS - 1 malignant or benign images, a group is "too small"
MIN_CLASS = 5
INTERVAL_METRICS = ("accuracy", "balanced_accuracy", "roc_auc", "sensitivity", "specificity")


def age_band(values: pd.Series) -> pd.Series:
    age = pd.to_numeric(values, errors="coerce")
    bands = pd.Series("unknown", index=values.index, dtype=object)
    for low, high, label in AGE_BANDS:
        bands[(age >= low) & (age < high)] = label
    return bands


def groupings(predictions: pd.DataFrame) -> dict[str, pd.Series]:
    """Attribute -> each image's group, for every metadata column the eval carries (age in bands)."""
    out = {}
    for column in METADATA:
        if column in predictions.columns:
            values = predictions[column].fillna("").astype(str).str.strip()
            out[column] = age_band(values) if column == "age" else values.where(values != "", "unknown")
    return out


def _group_figures(d: dict, rows: np.ndarray, lesions: np.ndarray, basis_multiclass: bool, resamples: int, seed: int) -> dict:
    """Figures of one subgroup (row 0: the data; rows 1..B: lesion resamples) -> value, low, high per metric."""
    w = np.vstack([np.ones((1, len(rows))), bootstrap.group_weights(lesions[rows], resamples, seed)])
    values = bootstrap.decision_figures({k: v[rows] for k, v in d.items()}, w, on_classes=basis_multiclass, pr_auc=False)
    out = {}
    for key in INTERVAL_METRICS:
        out[key] = float(values[key][0])
        out[f"{key}_low"], out[f"{key}_high"] = bootstrap.interval(values[key][1:])
    return out


def subgroup_table(info: dict, predictions: pd.DataFrame, d: dict, resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """One row per (attribute, group); `d` is report.decisions(info, predictions)."""
    lesions = predictions["lesion_id"].to_numpy()
    multiclass = info["task"] == "multiclass"
    records = []
    for attribute, groups in groupings(predictions).items():
        for group in sorted(groups.unique(), key=lambda g: (g == "unknown", _band_order(g), g)):
            rows = np.flatnonzero(groups.to_numpy() == group)
            malignant = int(d["y_mal"][rows].sum())
            # A group of one class is not small for that (its AUC is simply undefined); a handful of the other class is.
            too_small = len(rows) < MIN_IMAGES or 0 < malignant < MIN_CLASS or 0 < len(rows) - malignant < MIN_CLASS
            records.append({"attribute": attribute, "group": group, "images": len(rows), "lesions": int(pd.unique(lesions[rows]).size),
                            "malignant": malignant, "prevalence": malignant / len(rows),
                            **_group_figures(d, rows, lesions, multiclass, resamples, seed), "too_small": too_small})
    return pd.DataFrame(records)


def _band_order(group: str) -> int:
    labels = [label for _, _, label in AGE_BANDS]
    return labels.index(group) if group in labels else 0


def _cell(row, key: str) -> str:
    return fmt(row[key], (row[f"{key}_low"], row[f"{key}_high"]))


def markdown(table: pd.DataFrame, info: dict) -> str:
    basis = f"{len(info['class_names'])}-class" if info["task"] == "multiclass" else "malignant vs benign"
    lines = [f"# Subgroups: {info['model']} ({info['task']}) on {info['data']} — split `{info['split']}`", "",
             f"Accuracy and balanced accuracy of the {basis} decisions; ROC-AUC of the malignant score; sensitivity and "
             f"specificity at the model's threshold ({info['threshold']:.4f}). 95% intervals: bootstrap over the group's lesions. "
             f"*Too small*: fewer than {MIN_IMAGES} images, or only 1–{MIN_CLASS - 1} malignant or benign ones — "
             "shown, but read with care. Undefined figures (—): ROC-AUC without both malignant and benign images, sensitivity "
             f"without malignant ones, specificity without benign ones{'' if info['task'] == 'multiclass' else ', balanced accuracy without both'}. "
             "Age in bands of the recorded age.", ""]
    for attribute, rows in table.groupby("attribute", sort=False):
        lines += [f"## {attribute}", "", "| Group | Images | Lesions | Malignant | Accuracy | Balanced accuracy | ROC-AUC | Sensitivity | Specificity |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for _, r in rows.iterrows():
            name = f"{r['group']} *(too small)*" if r["too_small"] else r["group"]
            lines.append(f"| {name} | {r['images']} | {r['lesions']} | {r['malignant']} ({r['prevalence']:.1%}) | "
                         + " | ".join(_cell(r, k) for k in INTERVAL_METRICS) + " |")
        lines.append("")
    return "\n".join(lines)


def write_subgroups(folder: Path, info: dict, predictions: pd.DataFrame, d: dict, overall_auc: float, plots: bool = True) -> pd.DataFrame | None:
    """subgroups.csv, subgroups.md and subgroups.png in `folder`, if the eval carries any metadata and its model a
    benign/malignant view (the figures are the malignant score's)."""
    if not groupings(predictions) or not has_binary_view(info):
        return None
    table = subgroup_table(info, predictions, d)
    write_text(folder / "subgroups.csv", table.to_csv(index=False, float_format="%.6g"))
    write_text(folder / "subgroups.md", markdown(table, info))
    if plots:
        rows = [{"label": f"{r['attribute']}: {r['group']}", "auc": r["roc_auc"], "low": r["roc_auc_low"], "high": r["roc_auc_high"],
                 "too_small": r["too_small"]} for _, r in table.iterrows()]
        forest_plot(folder / "subgroups.png", rows, overall_auc, f"{info['model']} ({info['task']}) [{info['split']}]")
    return table
