"""One definition per figure (issue #20, bug 3): every reported point lies inside its own bootstrap interval (or
both are undefined together), equals scikit-learn's where defined, and compare's A is report's point.

Generated evals of both tasks on sets with every class, a class absent from truth and prediction, a class never
predicted, only benign and only malignant lesions. Where a figure is undefined the reports print "—", never "nan".
"""

import json
import re

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from dermcli.core.labels import BINARY_CLASSES, CLASSES, MALIGNANT
from dermcli.evaluation.compare import write_compare
from dermcli.evaluation.metrics import binary_summary
from dermcli.evaluation.report import fmt, write_reports

CASES = ("all_present", "class_missing", "never_predicted", "all_benign", "all_malignant")
MALIGNANT_INDICES = [CLASSES.index(c) for c in MALIGNANT]
BENIGN_INDICES = [k for k in range(len(CLASSES)) if k not in MALIGNANT_INDICES]


def generated(task: str, case: str, seed: int, n: int = 400) -> tuple[np.ndarray, np.ndarray, float]:
    """(labels, probabilities (n, K), threshold) of a noisy model on a set of the given case."""
    rng = np.random.default_rng(seed)
    if task == "binary":
        p_malignant = {"all_benign": 0.0, "all_malignant": 1.0, "class_missing": 0.0}.get(case, 0.3)
        y = (rng.random(n) < p_malignant).astype(int)
        score = np.clip(0.45 + 0.3 * (y - 0.5) + 0.2 * rng.standard_normal(n), 0, 0.9)
        # class_missing: no malignant lesion, but some called malignant; all_benign: and none called malignant
        threshold = 0.95 if case in ("never_predicted", "all_benign") else 0.5
        return y, np.stack([1 - score, score], axis=1), threshold
    classes = {"all_benign": BENIGN_INDICES, "all_malignant": list(MALIGNANT_INDICES)}.get(case, range(len(CLASSES)))
    classes = [k for k in classes if not (case == "class_missing" and k == 3)]  # no df in the set
    y = rng.choice(classes, n)
    probs = rng.dirichlet(np.ones(len(CLASSES)), n)
    probs[np.arange(n), y] += 0.8 * rng.random(n)
    if case in ("class_missing", "never_predicted"):  # df (absent) or vasc (present) never predicted
        probs[:, 3 if case == "class_missing" else 6] *= 0.01
    return y, probs / probs.sum(axis=1, keepdims=True), 0.4


def eval_folder(path, task: str, case: str, seed: int):
    """An eval folder as `dermcli eval` writes it (two images per lesion, and a sex column for the subgroups)."""
    y, probs, threshold = generated(task, case, seed)
    names = list(CLASSES if task == "multiclass" else BINARY_CLASSES)
    path.mkdir(parents=True)
    predictions = pd.DataFrame({"image_id": [f"ISIC_{i:07d}" for i in range(len(y))], "lesion_id": [f"HAM_{i // 2:07d}" for i in range(len(y))],
                                "label": [names[k] for k in y], "sex": np.where(np.arange(len(y)) % 4 < 2, "female", "male"),
                                **{f"p_{c}": np.round(probs[:, k], 6) for k, c in enumerate(names)}})
    predictions.to_csv(path / "predictions.csv", index=False)
    info = {"model": "cnn" if task == "multiclass" else "resnet50", "task": task, "class_names": names, "threshold": threshold,
            "threshold_source": "validation", "temperature": 1.0, "tta": "none", "weights": f"{path.name}.pt", "run_dir": str(path),
            "data": "generated", "split": "test", "images": len(y)}
    (path / "eval_info.json").write_text(json.dumps(info))
    return path


def sklearn_figures(r: dict, task: str) -> dict[str, tuple[float, float, list]]:
    """figure -> (report's point, scikit-learn's value (NaN where undefined), report's interval)."""
    d = r["decisions"]
    y_mal, call, score = d["y_mal"], d["malignant_pred"], d["score"]
    both = 0 < y_mal.sum() < len(y_mal)
    nan = float("nan")
    binary = {"recall": skm.recall_score(y_mal, call) if y_mal.any() else nan,
              "specificity": skm.recall_score(y_mal, call, pos_label=0) if not y_mal.all() else nan,
              "roc_auc": skm.roc_auc_score(y_mal, score) if both else nan,  # ROC- and PR-AUC: undefined without both classes
              "pr_auc": skm.average_precision_score(y_mal, score) if both else nan}
    y, pred = (d["y"], d["y_pred"]) if task == "multiclass" else (y_mal, call)
    head = {"accuracy": skm.accuracy_score(y, pred), "macro_f1": skm.f1_score(y, pred, average="macro")}
    if task == "multiclass":
        head["balanced_accuracy"] = skm.balanced_accuracy_score(y, pred)
        present = [k for k in range(len(CLASSES)) if 0 < (y == k).sum() < len(y)]
        head["macro_auc"] = np.mean([skm.roc_auc_score(y == k, d["probs"][:, k]) for k in present]) if present else nan
        where = {**{k: "multiclass" for k in head}, **{k: "binary" for k in binary}}
    else:  # binary balanced accuracy: (sensitivity + specificity) / 2, undefined without both classes
        head["balanced_accuracy"] = skm.balanced_accuracy_score(y, pred) if both else nan
        where = dict.fromkeys([*head, *binary], "binary")
    return {k: (r[where[k]][k], v, r["intervals"][k]) for k, v in {**head, **binary}.items()}


@pytest.fixture(scope="module")
def evals(tmp_path_factory):
    """(task, case, seed) -> the folder and write_reports' result, made once for the module."""
    root = tmp_path_factory.mktemp("evals")
    out = {}
    for task in ("multiclass", "binary"):
        for case in CASES:
            for seed in (0, 1, 2):
                folder = eval_folder(root / f"{task}_{case}_{seed}", task, case, seed)
                out[task, case, seed] = folder, write_reports(folder, plots=False)
    return out


ALL = [(task, case, seed) for task in ("multiclass", "binary") for case in CASES for seed in (0, 1, 2)]


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::RuntimeWarning")  # sklearn on absent classes
@pytest.mark.parametrize("task,case,seed", ALL)
def test_every_point_lies_in_its_interval_and_equals_sklearns(evals, task, case, seed):
    _, r = evals[task, case, seed]
    figures = sklearn_figures(r, task)
    assert set(figures) <= set(r["intervals"])
    for key, (point, theirs, (low, high)) in figures.items():
        if np.isnan(theirs):
            assert np.isnan(point) and np.isnan(low) and np.isnan(high), f"{key}: undefined, yet {point} ({low}, {high})"
        else:
            assert point == pytest.approx(theirs, abs=1e-9), key
            assert low - 1e-12 <= point <= high + 1e-12, f"{key}: {point} outside ({low}, {high})"


@pytest.mark.parametrize("task,case,seed", ALL)
def test_reports_print_the_same_point_and_a_dash_where_undefined(evals, task, case, seed):
    folder, r = evals[task, case, seed]
    head = r["multiclass" if task == "multiclass" else "binary"]
    report = (folder / "classification_report.txt").read_text()
    balanced = "Balanced multiclass accuracy" if task == "multiclass" else "Balanced accuracy"
    for label, key in (("Accuracy", "accuracy"), (balanced, "balanced_accuracy"), ("Macro F1", "macro_f1")):
        assert f"{label}: {fmt(head[key], r['intervals'][key])}\n" in report
    texts = [report, (folder / "metrics.md").read_text(), (folder / "subgroups.md").read_text()]
    assert not any(re.search(r"\bnan\b", text, re.IGNORECASE) for text in texts)
    if case == "all_benign":
        assert "| ROC-AUC | — |" in texts[1] and "| Recall | — |" in texts[1]
        if task == "binary":
            assert "Balanced accuracy: —\n" in report and "| Balanced accuracy | — |" in texts[1]
    json.loads((folder / "metrics.json").read_text(), parse_constant=pytest.fail)  # valid JSON: undefined is null


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("task,case", [(task, case) for task in ("multiclass", "binary") for case in CASES])
def test_compares_a_and_b_are_reports_points(evals, task, case, tmp_path):
    (a, report_a), (b, _) = evals[task, case, 0], evals[task, case, 1]
    b_as_a = tmp_path / "b"  # same images and labels as a, other predictions
    b_as_a.mkdir()
    predictions = pd.read_csv(b / "predictions.csv")
    predictions["label"] = pd.read_csv(a / "predictions.csv")["label"]
    predictions.to_csv(b_as_a / "predictions.csv", index=False)
    (b_as_a / "eval_info.json").write_text((b / "eval_info.json").read_text())
    report_b = write_reports(b_as_a, plots=False)
    result = write_compare([a, b_as_a], tmp_path / "out")
    where = {"sensitivity": ("binary", "recall"), "specificity": ("binary", "specificity"), "roc_auc": ("binary", "roc_auc"),
             "pr_auc": ("binary", "pr_auc")}
    head = "multiclass" if task == "multiclass" else "binary"
    for key, m in result["comparisons"][0]["metrics"].items():
        table, name = where.get(key, (head, key))
        for side, r in (("a", report_a), ("b", report_b)):
            assert m[side] == pytest.approx(r[table][name], abs=1e-12, nan_ok=True), f"{key} ({side})"
    assert not re.search(r"\bnan\b", (tmp_path / "out" / "compare.md").read_text(), re.IGNORECASE)
    json.loads((tmp_path / "out" / "compare.json").read_text(), parse_constant=pytest.fail)


def test_binary_summary_is_undefined_where_it_would_divide_by_zero():
    y, score = np.zeros(6, dtype=int), np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.8])
    m = binary_summary(y, score, 0.5)
    assert m["specificity"] == 0.5 and m["accuracy"] == 0.5 and m["precision"] == 0.0 and m["npv"] == 1.0 and m["f1"] == 0.0
    assert all(np.isnan(m[k]) for k in ("recall", "balanced_accuracy", "roc_auc", "pr_auc"))
    m = binary_summary(y, score, 0.9)  # no malignant lesion, none called malignant
    assert all(np.isnan(m[k]) for k in ("recall", "precision", "f1", "balanced_accuracy")) and m["npv"] == 1.0
