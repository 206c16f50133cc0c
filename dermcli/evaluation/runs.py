"""`dermcli runs DIR...`: every run folder below the folders given, one row each, read from the run's own files only
(config.json, history.csv, split.csv, and its eval folders' metrics.json): no server, no model, nothing heavy loaded.

Validation figures come from an eval of the val split in the run folder (`train --folds` makes one per fold) where
there is one, else from history.csv's best epoch, which records what training selects on (not balanced accuracy, nor
a 7-class model's malignant ROC-AUC). Test figures come from an eval of the test split in the run folder.
"""

import difflib
import json
import math
from collections import Counter
from pathlib import Path

from dermcli.core.errors import DermcliError
from dermcli.runtime.tracking import read_history, split_digest

# the table's figures, and their keys in metrics.json (figure()) and history.csv (val_KEY)
FIGURES = (("macro_f1", "macro_f1"), ("balanced_accuracy", "balanced_accuracy"), ("macro_auc", "macro_auc"), ("malignant_auc", "roc_auc"))
COLUMNS = ("run", "model", "task", "data", "split", "epochs", *(f"{s}_{name}" for s in ("val", "test") for name, _ in FIGURES), "wall_time")
TEXT_COLUMNS = ("run", "model", "task", "data", "split")


def figure(metrics: dict, key: str) -> float:
    """One figure of an eval's metrics.json; NaN where it is undefined (written there as null)."""
    if key in ("sensitivity", "specificity"):
        value = metrics["binary"]["recall" if key == "sensitivity" else "specificity"]
    elif key in ("roc_auc", "pr_auc"):
        value = metrics["binary"][key]
    else:
        value = metrics.get("multiclass", metrics["binary"]).get(key)
    return float("nan") if value is None else float(value)


def find_runs(folders: list[Path]) -> list[Path]:
    """Every folder at or below `folders` that holds a run: config.json beside history.csv."""
    runs = {p.parent for folder in folders for p in Path(folder).rglob("history.csv") if (p.parent / "config.json").is_file()}
    return sorted(runs)


def run_table(folders: list[Path], sort: str | None = None) -> list[dict]:
    """One row per run (COLUMNS, and other_split: True for a run on another split than most), sorted by `sort`."""
    runs = find_runs(folders)
    if not runs:
        raise DermcliError(f"no run folders (config.json beside history.csv) below {', '.join(map(str, folders))}")
    rows = [run_row(run) for run in runs]
    common = Counter(r["split"] for r in rows).most_common(1)[0][0]
    for r in rows:
        r["other_split"] = r["split"] != common  # figures on other images: not comparable with the rest
    return sort_rows(rows, sort) if sort else rows


def run_row(run: Path) -> dict:
    try:
        config = json.loads((run / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DermcliError(f"{run / 'config.json'}: not readable ({e})") from None
    history = read_history(run)
    evals = run_evals(run)
    row = {"run": str(run), "model": config.get("model"), "task": config.get("task"), "data": Path(config.get("data", "")).name or None,
           "split": split_digest(run / "split.csv"), "epochs": len(history)}
    best = best_epoch(history)
    for name, key in FIGURES:
        row[f"val_{name}"] = figure(evals["val"], key) if "val" in evals else best.get(f"val_{key}")
        row[f"test_{name}"] = figure(evals["test"], key) if "test" in evals else None
    row["wall_time"] = round(sum(r.get("seconds", 0.0) for r in history), 1)
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}  # NaN: undefined, shown as missing


def run_evals(run: Path) -> dict[str, dict]:
    """The metrics.json of the run folder's evals by split (the first eval folder by name, of each split)."""
    evals = {}
    for path in sorted(run.glob("*/metrics.json")):
        metrics = json.loads(path.read_text())
        evals.setdefault(metrics.get("info", {}).get("split"), metrics)
    return evals


def best_epoch(history: list[dict]) -> dict:
    """history.csv's row of the selected epoch: the best of its first validation figure, which training selects on."""
    selection = next((k for row in history[:1] for k in row if k.startswith("val_")), None)
    scored = [row for row in history if selection and not math.isnan(row.get(selection, math.nan))]  # NaN never selects
    return max(scored, key=lambda row: row[selection]) if scored else {}


def sort_rows(rows: list[dict], column: str) -> list[dict]:
    """Text columns A to Z, numbers largest first (the best figures, the longest runs); missing values last."""
    if column not in COLUMNS:
        close = difflib.get_close_matches(column, COLUMNS, n=1, cutoff=0.0)
        raise DermcliError(f"--sort {column!r} is not a column" + (f" (did you mean {close[0]!r}?)" if close else "") + f": {', '.join(COLUMNS)}")
    present = [r for r in rows if r[column] is not None]
    missing = [r for r in rows if r[column] is None]
    return sorted(present, key=lambda r: r[column], reverse=column not in TEXT_COLUMNS) + missing
