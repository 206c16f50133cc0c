"""compare (paired bootstrap, DeLong, McNemar), subgroup reports and ISIC's figures, on generated eval folders."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from dermcli.core.errors import DermcliError
from dermcli.core.labels import BINARY_CLASSES
from dermcli.evaluation.compare import compare, load_aligned, write_compare
from dermcli.evaluation.metrics import auc_above_sensitivity
from dermcli.evaluation.report import write_reports
from dermcli.evaluation.stats import delong, mcnemar


def eval_folder(path, y, score, lesions=None, threshold=0.5, extra=None):
    """An eval folder of a binary model as `dermcli eval` writes it."""
    path.mkdir(parents=True)
    n = len(y)
    predictions = pd.DataFrame({"image_id": [f"ISIC_{i:07d}" for i in range(n)],
                                "lesion_id": lesions if lesions is not None else [f"HAM_{i:07d}" for i in range(n)],
                                "label": [BINARY_CLASSES[v] for v in y], **(extra or {}),
                                "p_benign": np.round(1 - score, 6), "p_malignant": np.round(score, 6)})
    predictions.to_csv(path / "predictions.csv", index=False)
    info = {"model": "resnet50", "task": "binary", "class_names": list(BINARY_CLASSES), "threshold": threshold,
            "threshold_source": "validation", "temperature": 1.0, "weights": f"{path.name}.pt", "run_dir": str(path), "data": "generated",
            "split": "test", "images": n, "val_metrics": {}, "config": {}}
    (path / "eval_info.json").write_text(json.dumps(info))
    return path


def generated(n=400, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    lesions = [f"HAM_{i // 2:07d}" for i in range(n)]  # two images per lesion
    weak = np.clip(0.5 + 0.08 * (y - 0.5) + 0.25 * rng.standard_normal(n), 0, 1)
    strong = np.clip(0.5 + 0.6 * (y - 0.5) + 0.15 * rng.standard_normal(n), 0, 1)
    return y, lesions, weak, strong


def brute_force_delong(y, a, b):
    """DeLong's variance of AUC(b) - AUC(a) straight from the 1988 paper's definitions: every positive-negative
    pair's kernel psi (1 if the positive scores higher, 1/2 on ties), structural components V10, V01 as means
    of psi, and their sample covariances. O(m n) and written independently of dermcli.stats."""
    components = []
    for s in (a, b):
        pos, neg = s[y == 1], s[y == 0]
        psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
        components.append((psi.mean(axis=1), psi.mean(axis=0), psi.mean()))
    m, n = (y == 1).sum(), (y == 0).sum()
    s10 = np.cov(np.stack([components[0][0], components[1][0]]))
    s01 = np.cov(np.stack([components[0][1], components[1][1]]))
    s = s10 / m + s01 / n
    return components[0][2], components[1][2], s[0, 0] + s[1, 1] - 2 * s[0, 1]


def test_delong_matches_the_papers_definitions_computed_another_way():
    rng = np.random.default_rng(1)
    y = (rng.random(300) < 0.4).astype(int)
    a = np.round(y * 0.5 + rng.random(300), 1)  # rounded: many ties, which the midranks must handle
    b = np.round(y * 0.8 + rng.random(300), 2)
    result = delong(y, a, b)
    auc_a, auc_b, variance = brute_force_delong(y, a, b)
    assert result["auc_a"] == pytest.approx(auc_a, abs=1e-12) == pytest.approx(roc_auc_score(y, a), abs=1e-12)
    assert result["auc_b"] == pytest.approx(auc_b, abs=1e-12)
    assert result["se"] ** 2 == pytest.approx(variance, rel=1e-9)
    assert result["p"] < 0.05 and result["diff"] > 0


def test_mcnemar_is_the_exact_binomial_test():
    a = np.array([True] * 10 + [False] * 2 + [True] * 5)
    b = np.array([False] * 10 + [True] * 2 + [True] * 5)
    result = mcnemar(a, b)
    assert (result["only_a_correct"], result["only_b_correct"]) == (10, 2)
    assert result["p"] == pytest.approx(2 * sum(__import__("math").comb(12, k) for k in range(3)) / 2 ** 12)


def test_a_model_compared_with_itself_differs_by_zero_with_p_one(tmp_path):
    y, lesions, weak, _ = generated()
    a = eval_folder(tmp_path / "a", y, weak, lesions)
    b = eval_folder(tmp_path / "b", y, weak, lesions)
    result = compare(load_aligned([a, b]))
    rows = result["comparisons"][0]["metrics"]
    assert all(r["diff"] == 0 and r["p"] == 1 and r["ci"] == [0, 0] for r in rows.values())
    assert result["comparisons"][0]["delong"]["p"] == 1 and result["comparisons"][0]["mcnemar"]["p"] == 1


def test_a_clearly_better_model_is_found_better(tmp_path):
    y, lesions, weak, strong = generated()
    result = compare(load_aligned([eval_folder(tmp_path / "weak", y, weak, lesions), eval_folder(tmp_path / "strong", y, strong, lesions)]))
    c = result["comparisons"][0]
    assert c["metrics"]["roc_auc"]["diff"] > 0.2 and c["metrics"]["roc_auc"]["ci"][0] > 0 and c["metrics"]["roc_auc"]["p"] < 0.01
    assert c["delong"]["p"] < 0.01 and c["mcnemar"]["p"] < 0.01 and c["metrics"]["accuracy"]["p"] < 0.01
    assert c["metrics"]["roc_auc"]["a"] == pytest.approx(roc_auc_score(y, np.round(weak, 6)))


def test_several_folders_each_compared_with_the_first_and_written(tmp_path):
    y, lesions, weak, strong = generated()
    folders = [eval_folder(tmp_path / name, y, s, lesions) for name, s in (("a", weak), ("b", strong), ("c", (weak + strong) / 2))]
    result = write_compare(folders, tmp_path / "out")
    assert [(c["a"], c["b"]) for c in result["comparisons"]] == [("a", "b"), ("a", "c")]
    assert json.loads((tmp_path / "out" / "compare.json").read_text())["images"] == len(y)
    text = (tmp_path / "out" / "compare.md").read_text()
    assert "## B = b vs A = a" in text and "## B = c vs A = a" in text and "DeLong" in text and "McNemar" in text
    assert (tmp_path / "out" / "compare_roc_pr.png").stat().st_size > 10_000


def test_folders_of_other_images_are_refused_naming_the_first_mismatch(tmp_path):
    y, lesions, weak, strong = generated()
    a = eval_folder(tmp_path / "a", y, weak, lesions)
    b = eval_folder(tmp_path / "b", y[:-1], strong[:-1], lesions[:-1])
    with pytest.raises(DermcliError, match=r"not the same images .*image ISIC_0000399 is only in .*/a;"):
        load_aligned([a, b])
    c = eval_folder(tmp_path / "c", 1 - y, strong, lesions)
    with pytest.raises(DermcliError, match="labelled differently"):
        load_aligned([a, c])


def test_subgroups_show_a_planted_weak_group(tmp_path):
    rng = np.random.default_rng(3)
    n = 900
    y = (rng.random(n) < 0.3).astype(int)
    sex = np.where(np.arange(n) % 2 == 0, "female", "male")
    informative = np.clip(0.5 + 0.6 * (y - 0.5) + 0.15 * rng.standard_normal(n), 0, 1)
    score = np.where(sex == "female", rng.random(n), informative)  # planted: no signal at all for women
    age = np.where(np.arange(n) < 8, "", np.where(np.arange(n) % 3 == 0, "35", "70"))
    folder = eval_folder(tmp_path / "e", y, score, extra={"sex": sex, "age": age, "localization": ["back"] * (n - 3) + ["ear"] * 3})
    write_reports(folder)
    table = pd.read_csv(folder / "subgroups.csv", keep_default_na=False)
    row = table.set_index(["attribute", "group"])
    female, male = row.loc[("sex", "female")], row.loc[("sex", "male")]
    assert female["roc_auc_high"] < male["roc_auc_low"] and female["roc_auc"] < 0.65 < 0.9 < male["roc_auc"]
    assert row.loc[("localization", "ear"), "too_small"] and row.loc[("age", "unknown"), "images"] == 8  # small groups kept
    assert set(table.loc[table["attribute"] == "age", "group"]) == {"30–44", "60–74", "unknown"}
    text = (folder / "subgroups.md").read_text()
    assert "| female |" in text and "ear *(too small)*" in text
    assert (folder / "subgroups.png").stat().st_size > 10_000


def test_auc_above_80_percent_sensitivity_as_isic_computes_it():
    # Positives 0.9 0.8 0.7 0.6 0.3, negatives 0.65 0.5 0.4 0.2 0.1: the ROC first reaches TPR 0.8 at FPR 0.2,
    # then runs at 0.8 to FPR 0.6 and at 1 to FPR 1: area 0.4 * 0.8 + 0.4 * 1 = 0.72.
    y = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0, 0])
    score = np.array([0.9, 0.8, 0.7, 0.6, 0.3, 0.65, 0.5, 0.4, 0.2, 0.1])
    assert auc_above_sensitivity(y, score) == pytest.approx(0.72)
    assert auc_above_sensitivity(y, y.astype(float)) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    assert auc_above_sensitivity(rng.integers(0, 2, 20000), rng.random(20000)) == pytest.approx(0.18, abs=0.01)


def test_the_tests_p_values_equal_scipys():
    from scipy.stats import binomtest, norm, rankdata

    from dermcli.evaluation.stats import _midranks, normal_two_sided_p

    x = np.round(np.random.default_rng(0).random((2, 200)), 1)
    assert np.array_equal(_midranks(x), rankdata(x, method="average", axis=-1))
    assert normal_two_sided_p(1.7) == pytest.approx(2 * norm.sf(1.7))
    a = np.random.default_rng(1).random(300) < 0.7
    b = np.random.default_rng(2).random(300) < 0.8
    n = mcnemar(a, b)
    assert n["p"] == pytest.approx(binomtest(n["only_a_correct"], n["only_a_correct"] + n["only_b_correct"]).pvalue)
