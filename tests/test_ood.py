"""The out-of-distribution score: the distance it computes, its fitting at the end of training, how predict,
eval and ONNX carry it, and adding it to trained weights without changing their predictions."""

import json

import numpy as np
import pytest
import torch

from dermcli.inference.loading import load_runner
from dermcli.inference.runners import TorchRunner
from dermcli.models.checkpoint import read_checkpoint, save_checkpoint, write_payload
from dermcli.models.unusual import PASS_RATE, FeatureDistance, WithFeatures, fit_distance
from dermcli.training.unusual import add_statistics
from tests.conftest import run_cli


def test_distance_is_mahalanobis_to_the_nearest_class_mean_under_ledoit_wolf_shrinkage():
    from sklearn.covariance import ledoit_wolf

    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0, 0.0], [5.0, 0.0, 1.0]])
    labels = rng.integers(0, 2, 400)
    features = centres[labels] + rng.normal(size=(400, 3)) @ np.array([[2.0, 0.3, 0.0], [0.0, 1.0, 0.5], [0.0, 0.0, 0.2]])
    stats = fit_distance(features, labels)
    means = np.stack([features[labels == c].mean(0) for c in (0, 1)])
    cov, _ = ledoit_wolf(features - means[labels], assume_centered=True)
    cov += 1e-4 * np.mean(features ** 2) * np.eye(3)
    queries = np.array([[1.0, 1.0, 1.0], [5.0, 0.0, 1.0], [-20.0, 4.0, 3.0]])
    by_hand = [min(np.sqrt((q - m) @ np.linalg.inv(cov) @ (q - m)) for m in means) for q in queries]
    got = FeatureDistance(**stats)(torch.tensor(queries, dtype=torch.float32)).numpy()
    assert np.allclose(got, by_hand, rtol=1e-4)
    assert got[1] < got[0] < got[2]  # a class centre is closest, a far point furthest


def test_fewer_images_than_dimensions_still_give_a_stable_distance():
    rng = np.random.default_rng(1)
    features = np.maximum(rng.normal(size=(40, 300)), 0)  # ReLU features, 40 images, 300 dimensions
    features[:, :50] = 0  # dead units
    stats = fit_distance(features, rng.integers(0, 3, 40))
    assert torch.isfinite(stats["whitening"]).all() and torch.linalg.cond(stats["whitening"]) < 1e3
    constant = np.ones((40, 300)) + rng.normal(scale=1e-9, size=(40, 300))  # a barely trained model's features
    assert torch.linalg.matrix_norm(fit_distance(constant, rng.integers(0, 3, 40))["whitening"], 2) <= 100.1


def test_features_are_the_input_of_the_last_linear_layer():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3)).eval()
    x = torch.randn(5, 4)
    logits, features = WithFeatures(model)(x)
    assert torch.allclose(features, torch.relu(model[0](x)))
    assert torch.allclose(logits, model(x))
    assert not model[2]._forward_pre_hooks  # the tap leaves no hook behind


@pytest.fixture(scope="module")
def trained(real_subset, tmp_path_factory):
    out = tmp_path_factory.mktemp("ood") / "run"
    result = run_cli("train", "--data", str(real_subset), "--out", str(out), "--epochs", "3", "--batch-size", "16")
    assert result.returncode == 0, result.stderr
    return out


@pytest.mark.slow
def test_training_stores_statistics_and_a_validation_threshold(trained, real_subset, tmp_path):
    best = read_checkpoint(trained / "best.pt")
    assert best["ood"]["means"].shape == (7, 32) and best["ood"]["whitening"].shape == (32, 32)  # the CNN's last hidden layer
    assert best["meta"]["ood_pass_rate"] == PASS_RATE == 0.98
    result = run_cli("eval", "--weights", str(trained / "best.pt"), "--data", str(real_subset), "--split", "val", "--out", str(tmp_path / "val"))
    assert result.returncode == 0, result.stderr
    info = json.loads((tmp_path / "val" / "eval_info.json").read_text())
    scores = np.loadtxt(tmp_path / "val" / "predictions.csv", delimiter=",", skiprows=1, usecols=[-1], dtype=str)
    assert info["ood_threshold"] == best["meta"]["ood_threshold"]
    assert 0 < info["unusual_fraction"] <= 0.05  # the threshold is val's 98th percentile (ONNX rounding may move one image)
    assert len(scores) == info["images"]
    assert "Flagged as unlike the training images" in (tmp_path / "val" / "metrics.md").read_text()


def test_onnx_and_pytorch_give_the_same_distances(trained, real_subset):
    images = np.random.default_rng(1).integers(0, 256, (6, 28, 28, 3), dtype=np.uint8)
    _, expected = TorchRunner.load(trained / "best.pt").outputs(images)
    _, got = load_runner(trained / "best.pt", "onnx").outputs(images)
    assert expected is not None and np.allclose(got, expected, rtol=1e-3)


def test_predict_flags_a_flat_colour_and_writes_score_and_flag(trained, tmp_path):
    from PIL import Image

    Image.new("RGB", (600, 450), (0, 0, 255)).save(tmp_path / "blue.png")
    result = run_cli("predict", str(tmp_path / "blue.png"), "--weights", str(trained / "best.pt"), "--json", "--out", str(tmp_path / "p.csv"))
    assert result.returncode == 0, result.stderr
    row = json.loads(result.stdout.strip().splitlines()[0])
    assert row["unusual"] is True and row["ood_score"] > row["ood_threshold"]
    assert "is unlike the training images" in result.stderr
    header, values = (tmp_path / "p.csv").read_text().splitlines()[:2]
    assert header.endswith("ood_score,unusual") and values.endswith("True")


def test_statistics_added_to_trained_weights_change_no_prediction(trained, real_subset, tmp_path):
    payload = read_checkpoint(trained / "best.pt")
    stripped = tmp_path / "w.pt"
    write_payload(stripped, {k: v for k, v in payload.items() if k != "ood"})
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "split.csv").write_bytes((trained / "split.csv").read_bytes())
    images = np.random.default_rng(2).integers(0, 256, (8, 28, 28, 3), dtype=np.uint8)
    before, none = TorchRunner.load(stripped).outputs(images)
    assert none is None
    added = add_statistics(stripped, real_subset)
    after, distances = TorchRunner.load(stripped).outputs(images)
    assert np.array_equal(before, after)
    assert distances is not None and added["ood_threshold"] == pytest.approx(payload["meta"]["ood_threshold"], rel=1e-4)


def test_checkpoints_without_statistics_predict_without_a_score(tmp_path):
    from dermcli.inference.predict import predict
    from dermcli.models.registry import get_backend

    meta = {"backend": "cnn", "task": "multiclass", "class_names": ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"], "input_size": 28,
            "preprocessing": "unit", "model_options": {}, "threshold": 0.5, "temperature": 1.0}
    save_checkpoint(tmp_path / "plain.pt", get_backend("cnn").build(7, {}), meta)
    from PIL import Image

    Image.new("RGB", (30, 30), (200, 100, 100)).save(tmp_path / "a.png")
    (p,), problems = predict([str(tmp_path / "a.png")], tmp_path / "plain.pt", engine="onnx")
    assert not problems and p.ood_score is None and p.unusual is None


def test_an_ensemble_gets_statistics_of_its_last_members_features(trained, real_subset, tmp_path):
    from dermcli.training.ensemble import make_ensemble

    ensemble = make_ensemble([trained / "best.pt", trained / "best.pt"], real_subset, tmp_path / "ens.pt")
    images = np.random.default_rng(3).integers(0, 256, (8, 28, 28, 3), dtype=np.uint8)
    before, distances = TorchRunner.load(ensemble).outputs(images)
    assert distances is not None  # make_ensemble fits them itself
    added = add_statistics(ensemble, real_subset)  # as scripts/fit_ood.py refits them: the logits stay
    after, again = TorchRunner.load(ensemble).outputs(images)
    assert np.array_equal(before, after) and np.allclose(again, distances)
    _, single = TorchRunner.load(trained / "best.pt").outputs(images)  # both members are this network: its features
    assert np.allclose(distances, single, rtol=1e-4) and added["ood_threshold"] > 0
