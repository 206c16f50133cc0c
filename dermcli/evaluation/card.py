"""MODEL_CARD.md generated from an eval folder, the run's files and the checkpoint metadata: never typed."""

import json
from pathlib import Path

import pandas as pd

from dermcli.core.files import write_text
from dermcli.core.labels import sorted_labels
from dermcli.data.split import SPLITS
from dermcli.data.tables import PATIENT
from dermcli.evaluation.formatting import fmt, num, ood_pass_rate, overlap_sentence
from dermcli.evaluation.tracking import log_eval
from dermcli.inference.predict import DISCLAIMER
from dermcli.models.registry import describe

CITATION = ("Tschandl P., Rosendahl C., Kittler H. The HAM10000 dataset, a large collection of multi-source dermatoscopic "
            "images of common pigmented skin lesions. Sci. Data 5, 180161 (2018). doi:10.1038/sdata.2018.161")


def _table(header: list[str], rows: list[list]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(map(str, r)) + " |" for r in rows]


def split_counts(split: pd.DataFrame) -> list[str]:
    classes = sorted_labels(split["label"])
    counts = pd.crosstab(split["label"], split["split"]).reindex(index=classes, columns=list(SPLITS), fill_value=0)
    lesions = split.groupby("split")["lesion_id"].nunique().reindex(list(SPLITS), fill_value=0)
    rows = [[c, *counts.loc[c].tolist()] for c in classes]
    rows += [["**images**", *counts.sum().tolist()], ["**lesions**", *lesions.tolist()]]
    if PATIENT in split.columns:
        rows.append(["**patients**", *split.groupby("split")[PATIENT].nunique().reindex(list(SPLITS), fill_value=0).tolist()])
    return _table(["class", *SPLITS], rows)


def data_set_name(path: str) -> str:
    """A data set by name, never by a machine's path: its folder's (or CSV's) name; HAM10000 as it is written."""
    name = Path(str(path)).name
    return "HAM10000" if name.lower().startswith("ham10000") else name


def public_path(value: str) -> str:
    """A path as a card may show it: relative as given; an absolute one by its last two parts (no machine's layout)."""
    path = Path(str(value))
    return str(Path(*path.parts[-2:])) if path.is_absolute() else str(value)


def card_config(config: dict, model: str) -> dict:
    """The training configuration as the card shows it: set values only, paths public, records of older versions
    in today's terms (augment True = dihedral), and no `pretrained` where no pretrained weights were used (the
    CNN has none; --init replaces them)."""
    shown = {}
    for key, value in config.items():
        if value in ("", None) or (key == "pretrained" and (model == "cnn" or config.get("init"))):
            continue
        if key == "augment" and isinstance(value, bool):
            value = "dihedral" if value else "none"
        if key == "data":
            value = data_set_name(value)
        shown[key] = [public_path(v) for v in value] if isinstance(value, list) else public_path(value) if isinstance(value, str) else value
    return shown


def member_line(member: dict) -> str:
    size = f", trained at {member['input_size']} px" if "input_size" in member else ""  # ensembles made before --input-size lack it
    return f"- `{public_path(member['weights'])}` ({member['backend']}{size}): " + ", ".join(f"{k} {num(v)}" for k, v in member["val_metrics"].items())


def model_card(folder: Path) -> Path:
    folder = Path(folder)
    info = json.loads((folder / "eval_info.json").read_text())
    run_dir = Path(info["run_dir"])
    config = info.get("config", {})
    data = data_set_name(config.get("data", info["data"]))
    names = info["class_names"]
    kind = (f"{len(names)}-class ({', '.join(names)})" if info["task"] == "multiclass" else
            f"benign vs malignant ({', '.join(info.get('data_malignant', ('mel', 'bcc', 'akiec')))})")
    lines = [f"# Model card: {info['model']} ({info['task']}) on {data}", "", f"> **Disclaimer.** {DISCLAIMER}", "",
             "## Description", "",
             f"A {kind} dermoscopy classifier trained with dermcli. Weights: `{public_path(info['weights'])}`. Every figure below was computed by "
             f"`dermcli eval` on the **{info['split']}** split ({info['images']} images) and rendered by `dermcli report --card`."
             + overlap_sentence(info), "",
             "## Architecture", "", describe(info["model"]), ""]
    if info.get("members"):
        lines += ["Members (each with its own validation metrics):", ""] + [member_line(m) for m in info["members"]] + [""]
    if config:
        lines += ["## Training configuration", ""] + _table(["setting", "value"], [[k, f"`{v}`"] for k, v in card_config(config, info["model"]).items()])
        threshold = ("No benign/malignant view: no decision threshold" if info["threshold"] is None else
                     f"Decision threshold {info['threshold']:.4f} ({info['threshold_source']}; tuned on validation for sensitivity "
                     f"{config.get('target_sensitivity', 0.9):.2f})")
        lines += ["", f"{threshold}; temperature {info['temperature']:.3f} (fitted on validation).", ""]
    fp16 = Path(info["weights"]).with_suffix("") / "fp16_check.json"  # written by scripts/ship_weights.py --half
    if fp16.is_file():
        check = json.loads(fp16.read_text())
        lines += [f"Stored in fp16 (BatchNorm statistics in fp32). Its probabilities differ from the fp32 checkpoint by at most "
                  f"{check['max_abs_difference']:.1e} (mean {check['mean_abs_difference']:.1e}) on {check['images']} {check['split']} images.", ""]
    if (run_dir / "split.csv").is_file():
        split = pd.read_csv(run_dir / "split.csv")
        unit = "patient" if PATIENT in split.columns else "lesion"
        lines += ["## Data and split", "", f"{data}, split by **{unit}** (no {unit} in two splits), stratified by class, 70/15/15, "
                  f"seed {config.get('split_seed', 42)}. Images per split and class:", ""] + split_counts(split) + [""]
    if info.get("val_metrics"):
        lines += ["Validation metrics of the selected epoch: " + ", ".join(f"{k} {num(v)}" for k, v in info["val_metrics"].items()) + ".", ""]
    lines += [line.replace("# ", "## Metrics: ", 1) if line.startswith("# ") else line.replace("## ", "### ", 1)
              for line in (folder / "metrics.md").read_text().splitlines()]
    lines += ["", "## Limitations", "",
              *(["- Trained and tested on HAM10000 only (dermoscopic images from two sites, mostly fair skin); performance on other "
                 "populations, devices or clinical photographs is unknown and likely lower.",
                 "- Class imbalance: nv is about two thirds of the data; rare classes (df, vasc, akiec) have wide intervals."] if data == "HAM10000" else
               [f"- Trained and tested on {data} only; performance on other populations, devices or image types is unknown and likely lower."]),
              "- The test split is lesion-disjoint from training but from the same sources; it is not an external validation.",
              "- Probabilities are calibrated on the validation split only.",
              *(["- Images unlike the training images are flagged (distance of the penultimate features above the validation "
                 f"split's {ood_pass_rate(info):.1%} quantile, {info['ood_threshold']:.2f}); the flag screens out photographs and screenshots often, "
                 "not always (README, Unusual images), and says nothing about rare lesion types seen in training."] if "ood_threshold" in info else []),
              "",
              "## Citation", "", CITATION, "", "## Licence", "",
              "Code: MIT. The HAM10000 images are distributed under CC BY-NC 4.0; models trained on them inherit its non-commercial terms.", ""]
    path = folder / "MODEL_CARD.md"
    write_text(path, "\n".join(lines))
    log_eval(folder, files=[path])
    return path


def results_table(eval_folders: list[Path]) -> str:
    """The README's results table, one row per eval folder, from its metrics.json (never typed by hand)."""
    header = ["weights", "test images", "accuracy", "macro-F1", "macro ROC-AUC (7-class)", "malignant ROC-AUC", "malignant PR-AUC",
              "sensitivity / specificity at the val threshold"]
    rows = []
    for folder in eval_folders:
        m = json.loads((Path(folder) / "metrics.json").read_text())
        ci, b = m["intervals"], m["binary"]
        head = m.get("multiclass", b)
        rows.append([f"`{Path(m['info']['weights']).name}`", m["info"]["images"], fmt(head["accuracy"], ci["accuracy"]),
                     fmt(m["multiclass"]["macro_f1"], ci["macro_f1"]) if "multiclass" in m else "—",
                     fmt(head["macro_auc"], ci["macro_auc"]) if "multiclass" in m else "—",
                     fmt(b["roc_auc"], ci["roc_auc"]), fmt(b["pr_auc"], ci["pr_auc"]), f"{num(b['recall'])} / {num(b['specificity'])}"])
    return "\n".join(_table(header, rows))


def card_headline(weights: Path) -> dict | None:
    """The model card's headline figures, from the eval beside the checkpoint (WEIGHTS-without-suffix/eval, where
    the shipped models keep theirs); None when there is none."""
    path = Path(weights).with_suffix("") / "eval" / "metrics.json"
    if not path.is_file():
        return None
    metrics = json.loads(path.read_text())
    binary, multiclass = metrics["binary"], metrics.get("multiclass")
    return {"split": metrics["info"]["split"], "images": metrics["info"]["images"],
            "accuracy": (multiclass or binary)["accuracy"], "macro_f1": multiclass["macro_f1"] if multiclass else None,
            "macro_roc_auc": multiclass["macro_auc"] if multiclass else None, "malignant_roc_auc": binary["roc_auc"],
            "malignant_pr_auc": binary["pr_auc"], "sensitivity": binary["recall"], "specificity": binary["specificity"]}
