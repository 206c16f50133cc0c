"""What `train` sends to TensorBoard and MLflow (runtime.tracking): each epoch's history.csv row and throughput, the
calibration and the run's files at the end; and for `train --folds`, the cross-validation summary and the out-of-fold
eval, in the cross-validation folder's own run (each fold is a run of its own)."""

import json
from dataclasses import asdict
from pathlib import Path

from dermcli.evaluation.tracking import eval_figures
from dermcli.models.checkpoint import read_checkpoint
from dermcli.runtime.tracking import Tracking, open_tracking
from dermcli.training.config import TrainConfig

RUN_RECORD = ("config.json", "history.csv", "split.csv")  # logged with best.pt


def open_run(cfg: TrainConfig, out: Path, resume: bool, main: bool, log) -> Tracking:
    return open_tracking(out, asdict(cfg), resume=resume, main=main, log=log)


def epoch_figures(row: dict, train_images: int) -> dict:
    """The epoch's history.csv row, less the epoch, and its throughput: training images per second of the epoch
    (its training and validation both)."""
    return {**{k: v for k, v in row.items() if k != "epoch"}, "images_per_second": train_images / max(row["seconds"], 1e-6)}


def log_trained(tracking: Tracking, best: Path) -> None:
    """The calibration fitted at the end (temperature, threshold, selected epoch), best.pt and the run's record."""
    if not tracking.sinks:
        return
    meta = read_checkpoint(best)["meta"]
    tracking.log_final({k: v for k, v in {"temperature": meta["temperature"], "threshold": meta["threshold"], "best_epoch": meta["epoch"]}.items()
                        if v is not None},
                       files=[best, *(f for f in (best.parent / name for name in RUN_RECORD) if f.is_file())])


def log_cross_validation(cfg: TrainConfig, out: Path, resume: bool, log) -> None:
    """The folds' mean and standard deviation of each validation figure, and the out-of-fold eval (figures, plots, reports)."""
    tracking = open_run(cfg, out, resume, True, log)
    summary = json.loads((out / "cv_summary.json").read_text())
    metrics, figures, files = eval_figures(out / "oof", "oof")
    metrics.update({f"cv/{key}_{kind}": value for kind in ("mean", "sd") for key, value in summary[kind].items()})
    tracking.log_final(metrics, figures, files, "oof")
    tracking.log_final({}, files=[out / "cv_summary.md", out / "cv_summary.json"])
    tracking.close()
