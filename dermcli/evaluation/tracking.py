"""An eval in the tracked run it evaluates (runtime.tracking): `eval` (and `report`, `report --card`) add the headline
figures, the plots and the report files to the run's TensorBoard folder and MLflow run, where its config.json asked
for tracking."""

import json
from pathlib import Path

from dermcli.data.split import SPLITS
from dermcli.evaluation.evaluate import EVAL_INFO
from dermcli.runtime.tracking import open_tracking

SECTIONS = (("multiclass", ""), ("binary", "malignant_"))  # metrics.json's headline sections, and how their figures are named


def eval_figures(folder: Path, prefix: str) -> tuple[dict, dict, list]:
    """The eval's headline figures ({prefix}/NAME), its plots ({prefix}/PLOT: its PNG) and its other files."""
    folder = Path(folder)
    metrics = json.loads((folder / "metrics.json").read_text())
    figures = {f"{prefix}/{name}{key}": value for section, name in SECTIONS for key, value in metrics.get(section, {}).items()
               if isinstance(value, (int, float)) and not isinstance(value, bool)}  # null: undefined on this set
    plots = {f"{prefix}/{png.stem}": png for png in sorted(folder.glob("*.png"))}
    files = [f for f in sorted(folder.iterdir()) if f.is_file() and f.suffix != ".png"]
    return figures, plots, files


def log_eval(folder: Path, files: list[Path] | None = None) -> None:
    """Add the eval in `folder` (all of it, or only `files`) to the run it evaluates: the run folder holding the weights.

    Only an eval of one of the run's splits (or of a whole external set) is the run's: the part of one on the model's
    own images (overlap/) and the out-of-fold predictions of several models are not. Weights outside a run folder
    (the shipped ones, ensembles), and a run that asked for no tracking or predates it, are left as they are."""
    folder = Path(folder)
    info = json.loads((folder / EVAL_INFO).read_text())
    run = Path(info["weights"]).parent
    config = json.loads((run / "config.json").read_text()) if (run / "config.json").is_file() else {}
    if info.get("split") not in (*SPLITS, "all") or not (config.get("tensorboard") or config.get("mlflow")):
        return
    tracking = open_tracking(run, config, resume=True)
    if files is None:
        tracking.log_final(*eval_figures(folder, info["split"]), folder.name)
    else:
        tracking.log_final({}, files=files, folder=folder.name)
    tracking.close()
