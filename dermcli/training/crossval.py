"""`dermcli train --folds K`: K-fold cross-validation by lesion.

The test split stays exactly the one a plain run makes and is never touched; the other lesions are cut
into K lesion-level, class-stratified folds (data.split.fold_splits). Model k trains in RUN/fold_k and
validates on fold k; its fold is then evaluated into RUN/fold_k/val_eval, which marks the fold done, so an
interrupted job resumes fold by fold. At the end: cv_summary.md/json (mean ± sd of each validation figure
over the folds) and RUN/oof, the out-of-fold predictions of every non-test image with their full report.
"""

import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pandas as pd

from dermcli.core.errors import DermcliError
from dermcli.core.files import ensure_writable_dir, write_text
from dermcli.data.dataset import Source
from dermcli.data.label_set import chosen_table
from dermcli.data.split import fold_splits, save_split
from dermcli.evaluation.evaluate import EVAL_INFO, PREDICTIONS, evaluate
from dermcli.evaluation.report import write_reports
from dermcli.evaluation.runs import figure
from dermcli.runtime.distributed import environment
from dermcli.training import run  # as a module, so that tests can replace run.train
from dermcli.training.config import TrainConfig
from dermcli.training.tracking import log_cross_validation

CV_FILE = "cv.json"
SUMMARY_ROWS = [("accuracy", "Accuracy"), ("balanced_accuracy", "Balanced accuracy"), ("macro_f1", "Macro F1"),
                ("macro_auc", "Macro ROC-AUC (one-vs-rest)"), ("roc_auc", "ROC-AUC (malignant)"), ("pr_auc", "PR-AUC (malignant)"),
                ("sensitivity", "Sensitivity at the fold's threshold"), ("specificity", "Specificity at the fold's threshold")]


def is_cv_run(folder: Path) -> bool:
    return (Path(folder) / CV_FILE).is_file()


def train_folds(cfg: TrainConfig, folds: int | None, resume: bool = False, overwrite: bool = False, track=None,
                log=lambda msg: None, device: str = "auto") -> Path:
    """Train and evaluate every fold not yet done; returns the path of cv_summary.md."""
    if environment().size > 1:
        raise DermcliError("--folds under torchrun is not supported: run cross-validation in one process, or train each "
                           "fold's split.csv with `torchrun ... -m dermcli train --split-file`")

    out = ensure_writable_dir(Path(cfg.out))
    if resume:
        if not is_cv_run(out):
            raise DermcliError(f"{out}: no {CV_FILE}: not a cross-validation run")
        saved = json.loads((out / CV_FILE).read_text())
        folds, cfg = saved["folds"], TrainConfig.from_dict({**saved["config"], "out": str(out)})
    elif is_cv_run(out) and not overwrite:
        raise DermcliError(f"{out} already holds a cross-validation run: use --resume {out}, --overwrite, or another --out")
    cfg = cfg.resolved()
    if cfg.split_file:
        raise DermcliError("--folds makes its own splits around the plain run's test split; drop --split-file")
    write_text(out / CV_FILE, json.dumps({"folds": folds, "config": asdict(cfg)}, indent=2) + "\n")
    table = chosen_table(asdict(cfg))
    for k, split in enumerate(fold_splits(table, folds, cfg.split_seed), 1):
        fold = out / f"fold_{k}"
        if (fold / "val_eval" / "metrics.json").is_file():
            log(f"fold {k}/{folds}: done already")
            continue
        log(f"fold {k}/{folds}: train {(split['split'] == 'train').sum()}, val {(split['split'] == 'val').sum()}, "
            f"test {(split['split'] == 'test').sum()} (untouched)")
        half_done = (fold / "last.pt").is_file()
        if not half_done:
            save_split(split, fold / "split.csv")
        run.train(replace(cfg, out=str(fold), split_file=str(fold / "split.csv")), resume=half_done, overwrite=True, track=track, log=log,
                  device=device)
        evaluate(fold / "best.pt", Source.of_config(asdict(cfg)), fold / "val_eval", split="val", split_file=fold / "split.csv", track=track, log=log, device=device)
        write_reports(fold / "val_eval", plots=False)
    summary = summarise(out, folds)
    log_cross_validation(cfg, out, resume, log)
    return summary


def summarise(out: Path, folds: int) -> Path:
    """cv_summary.json/md from each fold's val_eval, and RUN/oof with the out-of-fold predictions' report."""
    per_fold = [json.loads((out / f"fold_{k}" / "val_eval" / "metrics.json").read_text()) for k in range(1, folds + 1)]
    figures = {key: [figure(m, key) for m in per_fold] for key, _ in SUMMARY_ROWS}
    figures = {k: v for k, v in figures.items() if not all(np.isnan(v))}
    summary = {"folds": folds, "per_fold": figures,
               "mean": {k: float(np.nanmean(v)) for k, v in figures.items()}, "sd": {k: float(np.nanstd(v, ddof=1)) for k, v in figures.items()}}
    write_text(out / "cv_summary.json", json.dumps(summary, indent=2) + "\n")
    lines = [f"# {folds}-fold cross-validation by lesion", "",
             "Each fold's model validated on its own fold (the images it never trained on); the test split is untouched. "
             "Mean ± sample standard deviation over the folds.", "",
             "| Metric | " + " | ".join(f"fold {k}" for k in range(1, folds + 1)) + " | mean ± sd |", "|---|" + "---|" * (folds + 1)]
    for key, label in SUMMARY_ROWS:
        if key in figures:
            lines.append(f"| {label} | " + " | ".join(f"{v:.3f}" for v in figures[key])
                         + f" | {summary['mean'][key]:.3f} ± {summary['sd'][key]:.3f} |")
    write_text(out / "cv_summary.md", "\n".join(lines) + "\n")
    write_out_of_fold(out, folds)
    return out / "cv_summary.md"


def write_out_of_fold(out: Path, folds: int) -> None:
    """RUN/oof: every non-test image's prediction by the model that did not train on it, and its reports.

    Each fold's probabilities already carry that fold's temperature, so the report's temperature is 1; its
    threshold is the mean of the folds' validation thresholds, each fitted on the images it now classifies.
    """
    infos = [json.loads((out / f"fold_{k}" / "val_eval" / EVAL_INFO).read_text()) for k in range(1, folds + 1)]
    predictions = pd.concat([pd.read_csv(out / f"fold_{k}" / "val_eval" / PREDICTIONS, dtype=str, keep_default_na=False)
                             for k in range(1, folds + 1)], ignore_index=True)
    oof = ensure_writable_dir(out / "oof")
    info = {**infos[0], "split": f"out-of-fold ({folds} folds)", "images": len(predictions), "weights": str(out / "fold_*" / "best.pt"),
            "threshold": None if any(i["threshold"] is None for i in infos) else float(np.mean([i["threshold"] for i in infos])), "threshold_source": "mean of the folds' validation",
            "temperature": 1.0, "run_dir": str(out / "fold_1")}
    write_text(oof / PREDICTIONS, predictions.to_csv(index=False))
    write_text(oof / EVAL_INFO, json.dumps(info, indent=2) + "\n")
    write_reports(oof)
