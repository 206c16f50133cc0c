"""dermcli ensemble: one checkpoint that is the mean of its members, calibrated on their shared validation split."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from dermcli.core.errors import DermcliError
from dermcli.evaluation.card import public_path
from dermcli.inference.runners import TorchRunner
from dermcli.models.ensemble import Ensemble
from dermcli.models.loading import load_model
from dermcli.models.outputs import probabilities
from dermcli.training.config import TrainConfig
from dermcli.training.ensemble import make_ensemble
from dermcli.training.run import train
from tests.conftest import make_ham, run_cli


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    root = tmp_path_factory.mktemp("ensemble")
    data = make_ham(root / "ham", lesions_per_class=6, tinted=True)  # a temperature fits to a clear minimum
    runs = [train(TrainConfig(data=str(data), out=str(root / f"seed{seed}"), epochs=3, batch_size=16, lr=0.01, seed=seed)) for seed in (1, 2)]
    return data, runs


def test_an_ensemble_of_two_is_the_mean_of_its_members(members, tmp_path):
    data, runs = members
    path = make_ensemble(runs, data, tmp_path / "ens.pt")
    ensemble, meta = load_model(path)
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28, 3), dtype=np.uint8)
    mean = np.mean([probabilities(TorchRunner(*load_model(r)).logits(images), load_model(r)[1]["temperature"]) for r in runs], axis=0)
    assert np.allclose(probabilities(TorchRunner(ensemble, meta).logits(images)), mean, atol=1e-5)
    assert meta["backend"] == "ensemble" and [m["weights"] for m in meta["members"]] == [str(r) for r in runs]
    assert (tmp_path / "ens" / "split.csv").read_text() == (runs[0].parent / "split.csv").read_text()  # eval finds it
    # its own unusual-image statistics: predictions carry a distance and a flag
    assert meta["ood_threshold"] > 0 and TorchRunner.load(path).outputs(images)[1] is not None


def test_one_sigmoid_output_averages_probabilities_too():
    torch.manual_seed(0)
    members = [nn.Linear(4, 1), nn.Linear(4, 1)]
    x = torch.randn(6, 4)
    ensemble = Ensemble(members, [2.0, 0.5])
    expected = (torch.sigmoid(members[0](x) / 2.0) + torch.sigmoid(members[1](x) / 0.5)) / 2
    assert torch.allclose(torch.sigmoid(ensemble(x)), expected, atol=1e-6)


def test_members_of_another_task_or_split_are_refused(members, tmp_path):
    data, runs = members
    binary = train(TrainConfig(data=str(data), out=str(tmp_path / "binary"), epochs=1, batch_size=16, task="binary"))
    with pytest.raises(DermcliError, match="task 'binary', not 'multiclass'"):
        make_ensemble([runs[0], binary], data, tmp_path / "e1.pt")
    other_split = train(TrainConfig(data=str(data), out=str(tmp_path / "split7"), epochs=1, batch_size=16, split_seed=7))
    with pytest.raises(DermcliError, match="its split differs"):
        make_ensemble([runs[0], other_split], data, tmp_path / "e2.pt")


@pytest.mark.slow
def test_the_ensemble_goes_through_eval_export_and_the_card(members, tmp_path):
    data, runs = members
    made = run_cli("ensemble", *map(str, runs), "--data", str(data), "--out", str(tmp_path / "ens.pt"))
    assert made.returncode == 0, made.stderr
    evaluated = run_cli("eval", "--weights", str(tmp_path / "ens.pt"), "--data", str(data), "--split", "val", "--out", str(tmp_path / "e"))
    assert evaluated.returncode == 0, evaluated.stderr  # ONNX export of the ensemble checked against PyTorch on the way
    assert json.loads((tmp_path / "e" / "eval_info.json").read_text())["model"] == "ensemble"
    assert run_cli("report", str(tmp_path / "e"), "--card").returncode == 0
    card = (tmp_path / "e" / "MODEL_CARD.md").read_text()
    assert all(f"`{public_path(str(r))}`" in card for r in runs) and str(tmp_path) not in card  # members named, no machine paths


def test_an_ensembles_tta_is_its_default_and_its_calibration(members, tmp_path):
    from dermcli.evaluation.evaluate import evaluate

    data, runs = members
    path = make_ensemble(runs, data, tmp_path / "ens.pt", tta="flips")
    assert load_model(path)[1]["tta"] == "flips"
    folder = evaluate(path, data, tmp_path / "e", split="val", engine="torch")
    assert json.loads((folder / "eval_info.json").read_text())["tta"] == "flips"


def benchmark_rows(runs, data, tmp_path, monkeypatch, sizes: str, tta: str) -> list[dict]:
    """benchmarks/ensembles.py's rows for these checkpoints (every subset, at each size)."""
    import sys

    from benchmarks import ensembles

    out = tmp_path / f"rows_{sizes}_{tta}.json"
    monkeypatch.setattr(sys, "argv", ["ensembles.py", *map(str, runs), "--data", str(data), "--sizes", sizes, "--tta", tta,
                                      "--views", str(tmp_path / "views"), "--json", str(out)])
    ensembles.main()
    return json.loads(out.read_text())


@pytest.mark.slow
def test_members_of_other_sizes_join_at_the_ensembles_input_size(tmp_path, monkeypatch):
    from dermcli.evaluation.card import model_card
    from dermcli.evaluation.evaluate import evaluate
    from dermcli.evaluation.report import write_reports

    data = make_ham(tmp_path / "ham", lesions_per_class=3)
    runs = [train(TrainConfig(data=str(data), out=str(tmp_path / f"s{size}"), model="resnet18", pretrained=False, input_size=size,
                              epochs=1, batch_size=16, seed=size)) for size in (32, 48)]
    with pytest.raises(DermcliError, match="input_size 48, not 32"):
        make_ensemble(runs, data, tmp_path / "refused.pt")
    path = make_ensemble(runs, data, tmp_path / "ens.pt", input_size=40)
    ensemble, meta = load_model(path)
    assert meta["input_size"] == 40 and [m["input_size"] for m in meta["members"]] == [32, 48]
    images = np.random.default_rng(0).integers(0, 256, (4, 40, 40, 3), dtype=np.uint8)
    mean = np.mean([probabilities(TorchRunner(*load_model(r)).logits(images), load_model(r)[1]["temperature"]) for r in runs], axis=0)
    assert np.allclose(probabilities(TorchRunner(ensemble, meta).logits(images)), mean, atol=1e-5)
    # calibrated on validation images decoded at 40 px, not at a member's own size
    at = {size: benchmark_rows(runs, data, tmp_path, monkeypatch, str(size), "none")[-1]["temperature"] for size in (32, 40)}
    assert meta["temperature"] == pytest.approx(at[40], rel=1e-3) and meta["temperature"] != pytest.approx(at[32], rel=1e-3)
    assert "pixels_40px" in pd.read_csv(tmp_path / "ens" / "split.csv").columns  # what a later eval checks other data against
    folder = evaluate(path, data, tmp_path / "e", split="val", engine="torch")
    write_reports(folder, plots=False)
    assert "trained at 32 px" in model_card(folder).read_text()


def test_the_shared_size_given_changes_nothing_and_a_fixed_size_model_is_refused(members, tmp_path):
    data, runs = members
    same = load_model(make_ensemble(runs, data, tmp_path / "same.pt", input_size=28))[1]
    assert same["val_metrics"] == load_model(make_ensemble(runs, data, tmp_path / "plain.pt"))[1]["val_metrics"]
    with pytest.raises(DermcliError, match=r"seed1/best.pt: this model cannot run at --input-size 32"):
        make_ensemble(runs, data, tmp_path / "bigger.pt", input_size=32)


def test_the_subset_benchmark_scores_a_subset_as_the_ensemble_ships_it(members, tmp_path, monkeypatch):
    data, runs = members
    shipped = load_model(make_ensemble(runs, data, tmp_path / "ens.pt", tta="flips"))[1]
    rows = benchmark_rows(runs, data, tmp_path, monkeypatch, "28", "flips")
    assert [len(r["members"]) for r in rows] == [1, 1, 2] and len(list((tmp_path / "views").glob("*.npy"))) == 2
    both = rows[-1]  # the temperature is fitted to every probability of every view: it checks the whole chain
    assert both["temperature"] == pytest.approx(shipped["temperature"], rel=1e-3)
    # (not the AUCs: these barely trained members tie in float32, the ensemble's precision, and not in float64)
    assert {k: both[k] for k in ("accuracy", "macro_f1")} == {k: shipped["val_metrics"][k] for k in ("accuracy", "macro_f1")}
    other_split = train(TrainConfig(data=str(data), out=str(tmp_path / "split7"), epochs=1, batch_size=16, split_seed=7))
    with pytest.raises(DermcliError, match="its split differs"):  # scored on the first one's validation images, it would leak
        benchmark_rows([runs[0], other_split], data, tmp_path, monkeypatch, "28", "flips")


def test_the_contrasts_benchmark_differences_are_paired_and_the_prior_power_trades_accuracy(members, tmp_path, monkeypatch):
    import sys

    from benchmarks import contrasts

    data, runs = members
    out = tmp_path / "contrasts.json"
    pair, single = ",".join(map(str, runs)), str(runs[1])

    def rows(*candidates, powers="0,1"):
        monkeypatch.setattr(sys, "argv", ["contrasts.py", *candidates, "--powers", powers, "--data", str(data), "--tta", "flips",
                                          "--views", str(tmp_path / "views"), "--resamples", "200", "--json", str(out)])
        contrasts.main()
        return json.loads(out.read_text())

    every = rows(f"28:{pair}", f"28:{single}", f"28:{pair}")
    reference, single_rows, again = every[:2], every[2:4], every[4:]
    assert all(r["difference_95"] == {f: [0.0, 0.0] for f in contrasts.DECISION_FIGURES} for r in (reference[0], again[0]))
    assert again == reference  # the same candidate, the same draws: the same figures and differences at every power
    assert {k: single_rows[0][k] for k in ("accuracy", "macro_auc")} == {k: benchmark_rows([runs[1]], data, tmp_path, monkeypatch, "28", "flips")[0][k]
                                                                         for k in ("accuracy", "macro_auc")}
    assert reference[1]["macro_auc"] == reference[0]["macro_auc"]  # the prior moves decisions, never the probabilities
    probs = np.array([[0.6, 0.4], [0.3, 0.7]])
    assert contrasts.decided(probs, np.array([0.9, 0.1]), 0).tolist() == [0, 1]
    assert contrasts.decided(probs, np.array([0.9, 0.1]), 1).tolist() == [1, 1]  # 0.6 / 0.9 < 0.4 / 0.1


def test_the_contrasts_differences_are_paired_over_lesions_against_the_first_candidates_argmax():
    from benchmarks import contrasts
    from dermcli.evaluation.bootstrap import group_weights

    rng = np.random.default_rng(0)
    lesions = np.repeat(np.arange(30), 2)  # two images a lesion
    y = rng.integers(0, 3, 60)
    right, wrong = np.eye(3)[y] * 0.8 + 0.1, np.eye(3)[(y + 1) % 3] * 0.8 + 0.1
    half = np.where((lesions % 2 == 0)[:, None], right, wrong)  # right on every other lesion
    w = group_weights(lesions, 300, seed=0)
    prior = np.array([0.9, 0.05, 0.05])  # a prior that moves decisions away from class 0 at power 1
    rows = contrasts.decision_rows(y, [({"name": "half"}, half), ({"name": "all"}, right)], prior, [1.0, 0.0], w)
    assert [(r["name"], r["prior_power"]) for r in rows] == [("half", 1.0), ("half", 0.0), ("all", 1.0), ("all", 0.0)]
    assert (rows[1]["accuracy"], rows[3]["accuracy"]) == (0.5, 1.0) and rows[2]["accuracy"] < 1.0
    assert rows[1]["difference_95"]["accuracy"] == (0.0, 0.0) != rows[0]["difference_95"]["accuracy"]  # half's argmax, not its first row
    low, high = rows[3]["difference_95"]["accuracy"]
    assert 0.3 < low < 0.5 < high < 0.7  # half's accuracy moves with the drawn lesions, and all's lead with it
    assert contrasts.decision_rows(y, [({}, half), ({}, half)], prior, [0.0], w)[1]["difference_95"]["accuracy"] == (0.0, 0.0)  # paired
    with pytest.raises(SystemExit, match="must include 0"):
        contrasts.decision_rows(y, [({}, half)], prior, [0.5], w)


def test_the_contrasts_prior_is_the_training_splits_and_refuses_an_absent_class():
    from benchmarks import contrasts

    meta = {"task": "multiclass", "class_names": ["bcc", "mel", "nv"]}
    table = pd.DataFrame({"image_id": [f"i{n}" for n in range(8)], "dx": ["nv", "nv", "nv", "mel", "bcc", "mel", "mel", "mel"]})
    table["lesion_id"] = table["image_id"]
    split = pd.DataFrame({"image_id": table["image_id"], "split": ["train"] * 5 + ["val"] * 3})
    assert contrasts.training_prior(table, split, meta).tolist() == [0.2, 0.2, 0.6]  # validation (all mel) left out
    split.loc[4, "split"] = "val"
    with pytest.raises(SystemExit, match="no training image of bcc"):
        contrasts.training_prior(table, split, meta)
