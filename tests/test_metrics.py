import numpy as np
import pytest
from sklearn.metrics import classification_report, f1_score, roc_auc_score

from dermcli.evaluation import bootstrap
from dermcli.evaluation.metrics import (
    binary_summary,
    expected_calibration_error,
    fit_temperature,
    macro_ovr_auc,
    multiclass_summary,
    nll,
    threshold_for_sensitivity,
)
from dermcli.models.outputs import probabilities


def noisy_scores(n=1500, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.2).astype(int)
    return y, np.clip(0.3 * y + rng.random(n) * 0.7, 0, 1)


def test_perfect_classifier_has_auc_one_and_zero_width_interval():
    y = np.array([0, 1] * 50)
    score = y * 0.9 + 0.05
    assert binary_summary(y, score, 0.5)["roc_auc"] == 1.0
    w = bootstrap.group_weights(np.arange(100) // 2, 200, seed=0)
    assert bootstrap.interval(bootstrap.weighted_auc(y, score, w)) == (1.0, 1.0)
    assert bootstrap.interval(bootstrap.weighted_average_precision(y, score, w)) == (1.0, 1.0)


def test_known_confusion_matches_sklearn():
    y = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    pred = np.array([0, 1, 0, 1, 1, 2, 0, 2, 1])
    probs = np.eye(3)[pred] * 0.8 + 0.2 / 3
    m = multiclass_summary(y, probs)
    assert m["accuracy"] == pytest.approx(6 / 9)
    assert m["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert m["weighted_f1"] == pytest.approx(f1_score(y, pred, average="weighted"))
    cm = bootstrap.weighted_confusion(y, pred, 3, np.ones((1, len(y))))
    assert cm[0].tolist() == [[2, 1, 0], [0, 2, 0], [1, 1, 2]]
    report = classification_report(y, pred, output_dict=True)
    assert bootstrap.confusion_scores(cm)["macro_f1"][0] == pytest.approx(report["macro avg"]["f1-score"])


def test_binary_table_at_a_threshold():
    y = np.array([1, 1, 1, 0, 0, 0, 0, 0])
    score = np.array([0.9, 0.6, 0.2, 0.7, 0.1, 0.1, 0.3, 0.05])
    m = binary_summary(y, score, 0.5)
    assert (m["tp"], m["fn"], m["fp"], m["tn"]) == (2, 1, 1, 4)
    assert m["recall"] == pytest.approx(2 / 3) and m["specificity"] == pytest.approx(4 / 5) and m["npv"] == pytest.approx(4 / 5)
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, score))


def test_weighted_auc_and_ap_match_sklearn_on_a_resample():
    from sklearn.metrics import average_precision_score

    y, score = noisy_scores()
    score = np.round(score, 2)  # ties
    w = bootstrap.group_weights(np.arange(len(y)) // 3, 5, seed=1)
    rows = np.repeat(np.arange(len(y)), w[2].astype(int))
    assert bootstrap.weighted_auc(y, score, w)[2] == pytest.approx(roc_auc_score(y[rows], score[rows]))
    assert bootstrap.weighted_average_precision(y, score, w)[2] == pytest.approx(average_precision_score(y[rows], score[rows]))


def test_bootstrap_is_seeded_and_resamples_whole_lesions():
    groups = np.repeat(np.arange(300), 3)
    a, b = bootstrap.group_weights(groups, 50, seed=7), bootstrap.group_weights(groups, 50, seed=7)
    assert np.array_equal(a, b) and not np.array_equal(a, bootstrap.group_weights(groups, 50, seed=8))
    per_lesion = a.reshape(50, 300, 3)
    assert (per_lesion == per_lesion[:, :, :1]).all()  # a lesion's images are drawn together
    assert np.allclose(a.sum(axis=1), len(groups))


@pytest.mark.parametrize("target", [0.8, 0.85, 0.9, 0.95])
def test_threshold_reaches_target_sensitivity_on_its_data(target):
    y, score = noisy_scores()
    t = threshold_for_sensitivity(y, score, target)
    sensitivity = binary_summary(y, score, t)["recall"]
    assert sensitivity >= target and binary_summary(y, score, t + 1e-9)["recall"] < target


def test_temperature_scaling_lowers_nll_of_overconfident_logits():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 7, 2000)
    logits = rng.normal(size=(2000, 7)) + 2.0 * np.eye(7)[y]
    logits *= 4  # overconfident
    t = fit_temperature(logits, y)
    assert t > 1.5 and nll(y, probabilities(logits, t)) < nll(y, probabilities(logits))
    assert expected_calibration_error(y, probabilities(logits, t)) < expected_calibration_error(y, probabilities(logits))


def test_ece_is_zero_when_confidence_equals_accuracy():
    probs = np.tile([0.75, 0.25], (8, 1))
    y = np.array([0, 0, 0, 1, 0, 0, 0, 1])
    assert expected_calibration_error(y, probs) == pytest.approx(0.0)


def test_macro_auc_is_the_mean_of_one_vs_rest_aucs():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 4, 400)
    probs = rng.dirichlet(np.ones(4), 400) + 0.5 * np.eye(4)[y]
    probs /= probs.sum(axis=1, keepdims=True)
    expected = np.mean([roc_auc_score(y == k, probs[:, k]) for k in range(4)])
    assert macro_ovr_auc(y, probs) == pytest.approx(expected)


def test_auc_intervals_are_undefined_without_both_classes():
    y, score = np.zeros(50, dtype=int), np.linspace(0, 1, 50)
    w = bootstrap.group_weights(np.arange(50), 20, seed=0)
    assert np.isnan(bootstrap.weighted_auc(y, score, w)).all()
    assert np.isnan(bootstrap.weighted_average_precision(y, score, w)).all()
    assert np.isnan(bootstrap.interval(bootstrap.weighted_auc(y, score, w))).all()


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")  # planted on purpose
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_report_metrics_without_sklearn_equal_sklearns(seed):
    from sklearn import metrics as skm

    from dermcli.core.labels import CLASSES
    from dermcli.evaluation.metrics import average_precision, confusion_matrix, pr_points, roc_auc, roc_points
    from dermcli.evaluation.report import sklearn_style_report

    rng = np.random.default_rng(seed)
    y = rng.choice([0, 1, 2, 4, 5, 6], 400, p=[0.05, 0.1, 0.15, 0.1, 0.5, 0.1])  # df (3) never occurs
    probs = rng.dirichlet(np.ones(7), 400)
    probs[np.arange(400), y] += rng.random(400)
    probs[:, 6] *= 0.01  # vasc is never predicted
    probs /= probs.sum(axis=1, keepdims=True)
    pred = probs.argmax(axis=1)
    ours = multiclass_summary(y, probs)
    assert ours["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert ours["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))  # over the classes in truth or prediction
    assert ours["weighted_f1"] == pytest.approx(f1_score(y, pred, average="weighted", labels=range(7), zero_division=0))
    assert sklearn_style_report(confusion_matrix(y, pred, 7), list(CLASSES)) == classification_report(
        y, pred, labels=range(7), target_names=CLASSES, digits=4, zero_division=0)
    binary, score = (y == 4).astype(int), np.round(probs[:, 4], 2)  # rounded: ties
    assert roc_auc(binary, score) == pytest.approx(roc_auc_score(binary, score))
    assert average_precision(binary, score) == pytest.approx(skm.average_precision_score(binary, score))
    fpr, tpr, _ = skm.roc_curve(binary, score, drop_intermediate=False)
    assert np.allclose(roc_points(binary, score), (fpr, tpr))
    precision, recall, _ = skm.precision_recall_curve(binary, score)
    ours_recall, ours_precision = pr_points(binary, score)
    assert np.allclose(ours_recall, recall[:-1][::-1]) and np.allclose(ours_precision, precision[:-1][::-1])
