"""`train --folds K` on a small real HAM10000 subset: lesion-level folds around the untouched test split, resumable."""

import json

import pandas as pd
import pytest

import dermcli.training.run as training
from dermcli.data.dataset import load_dataset
from dermcli.data.split import make_split
from dermcli.training.config import TrainConfig
from dermcli.training.crossval import train_folds
from tests.conftest import run_cli


def config(data, out):
    return TrainConfig(data=str(data), out=str(out), model="cnn", epochs=1, batch_size=32)


def test_three_folds_partition_the_non_test_lesions_and_resume_fold_by_fold(real_subset, tmp_path, monkeypatch):
    run = tmp_path / "cv"
    real_train, calls = training.train, []

    def dies_in_fold_two(cfg, **kwargs):
        calls.append(cfg.out)
        if cfg.out.endswith("fold_2"):
            raise KeyboardInterrupt
        return real_train(cfg, **kwargs)

    monkeypatch.setattr(training, "train", dies_in_fold_two)
    with pytest.raises(KeyboardInterrupt):
        train_folds(config(real_subset, run), 3)
    first_fold = (run / "fold_1" / "best.pt").read_bytes()
    monkeypatch.setattr(training, "train", real_train)
    summary = train_folds(config(real_subset, run), None, resume=True)
    assert (run / "fold_1" / "best.pt").read_bytes() == first_fold  # a finished fold is not trained again

    splits = [pd.read_csv(run / f"fold_{k}" / "split.csv") for k in (1, 2, 3)]
    plain = make_split(load_dataset(real_subset), seed=42)
    for split in splits:
        assert (split["split"] == "test").tolist() == (plain["split"] == "test").tolist()  # the plain run's test split
        assert split.groupby("lesion_id")["split"].nunique().max() == 1  # no lesion straddles train and val
    val_folds = pd.concat([s.loc[s["split"] == "val", "image_id"] for s in splits])
    non_test = plain.loc[plain["split"] != "test", "image_id"]
    assert sorted(val_folds) == sorted(non_test)  # every non-test image in exactly one validation fold

    oof = pd.read_csv(run / "oof" / "predictions.csv")
    assert sorted(oof["image_id"]) == sorted(non_test) and (run / "oof" / "classification_report.txt").is_file()
    cv = json.loads((run / "cv_summary.json").read_text())
    assert len(cv["per_fold"]["accuracy"]) == 3 and 0 <= cv["mean"]["macro_auc"] <= 1
    assert "± " in summary.read_text()


@pytest.mark.slow
def test_folds_through_the_cli_refuse_a_second_run_in_the_same_folder(real_subset, tmp_path):
    args = ["train", "--data", str(real_subset), "--out", str(tmp_path / "cv"), "--folds", "2", "--epochs", "1", "--batch-size", "32"]
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    assert "2-fold cross-validation by lesion" in first.stdout
    again = run_cli(*args)
    assert again.returncode == 1 and "already holds a cross-validation run" in again.stderr
    assert run_cli("train", "--data", str(real_subset), "--out", str(tmp_path / "x"), "--folds", "1").returncode == 1
