import pandas as pd
import pytest
import torch

import dermcli.training.run as training
from dermcli.core.errors import DermcliError
from dermcli.models.checkpoint import read_checkpoint
from dermcli.training.config import TrainConfig
from tests.conftest import make_ham


@pytest.fixture(scope="module")
def small_ham(tmp_path_factory):
    return make_ham(tmp_path_factory.mktemp("small"), lesions_per_class=5, images_per_lesion=2)


def config(data, out, **changes):
    settings = {"model": "cnn", "epochs": 3, "batch_size": 16, "scheduler": "cosine", **changes}
    return TrainConfig(data=str(data), out=str(out), **settings)


def history(run):
    return pd.read_csv(run / "history.csv").drop(columns="seconds")


def weights(path):
    return read_checkpoint(path)["state_dict"]


def same_weights(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("ema", [0.0, 0.9])
def test_resume_after_ctrl_c_ends_where_an_uninterrupted_run_ends(small_ham, tmp_path, monkeypatch, ema):
    training.train(config(small_ham, tmp_path / "whole", ema=ema))

    real_epoch, calls = training.train_one_epoch, []

    def interrupt_second_epoch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(training, "train_one_epoch", interrupt_second_epoch)
    with pytest.raises(training.Interrupted, match="resume with `dermcli train --resume"):
        training.train(config(small_ham, tmp_path / "cut", ema=ema))
    assert read_checkpoint(tmp_path / "cut" / "last.pt")["training_state"]["epoch"] == 1
    monkeypatch.setattr(training, "train_one_epoch", real_epoch)
    training.train(TrainConfig(data="", out=str(tmp_path / "cut")), resume=True)

    pd.testing.assert_frame_equal(history(tmp_path / "whole"), history(tmp_path / "cut"))
    assert same_weights(weights(tmp_path / "whole" / "last.pt"), weights(tmp_path / "cut" / "last.pt"))
    assert same_weights(weights(tmp_path / "whole" / "best.pt"), weights(tmp_path / "cut" / "best.pt"))


def test_with_ema_validation_and_best_pt_use_the_weight_average(small_ham, tmp_path):
    training.train(config(small_ham, tmp_path / "run", epochs=1, ema=0.9))
    last = read_checkpoint(tmp_path / "run" / "last.pt")
    best = weights(tmp_path / "run" / "best.pt")
    assert same_weights(best, last["training_state"]["ema"]["state_dict"])
    assert not same_weights(best, last["state_dict"])


def test_deterministic_runs_repeat_exactly(small_ham, tmp_path):
    for run in ("a", "b"):
        training.train(config(small_ham, tmp_path / run, epochs=1, deterministic=True))
    pd.testing.assert_frame_equal(history(tmp_path / "a"), history(tmp_path / "b"))
    assert same_weights(weights(tmp_path / "a" / "best.pt"), weights(tmp_path / "b" / "best.pt"))


def test_existing_run_is_not_overwritten_without_asking(small_ham, tmp_path):
    training.train(config(small_ham, tmp_path / "run", epochs=1))
    before = (tmp_path / "run" / "best.pt").read_bytes()
    with pytest.raises(DermcliError, match="already holds a run"):
        training.train(config(small_ham, tmp_path / "run", epochs=1, seed=7))
    assert (tmp_path / "run" / "best.pt").read_bytes() == before
    training.train(config(small_ham, tmp_path / "run", epochs=1, seed=7), overwrite=True)
    assert (tmp_path / "run" / "best.pt").read_bytes() != before


def test_run_folder_holds_split_config_and_calibration(small_ham, tmp_path):
    best = training.train(config(small_ham, tmp_path / "run", epochs=1))
    split = pd.read_csv(tmp_path / "run" / "split.csv")
    assert list(split.columns) == ["image_id", "lesion_id", "label", "split", "pixels_28px"]  # digests: see data.overlap
    assert (split.groupby("lesion_id")["split"].nunique() == 1).all()
    meta = read_checkpoint(best)["meta"]
    assert meta["backend"] == "cnn" and meta["task"] == "multiclass" and meta["config"]["seed"] == 42
    assert 0 < meta["temperature"] and 0 <= meta["threshold"] <= 1 and "macro_f1" in meta["val_metrics"]


def test_bad_choices_are_one_line_errors(small_ham, tmp_path):
    with pytest.raises(DermcliError, match="--freeze 'layer3' is not one of none"):
        training.train(config(small_ham, tmp_path / "x", freeze="layer3"))
    with pytest.raises(DermcliError, match="unknown model"):
        training.train(config(small_ham, tmp_path / "x", model="vgg"))


def test_resume_can_extend_a_finished_run(small_ham, tmp_path):
    training.train(config(small_ham, tmp_path / "run", epochs=1))
    training.train(TrainConfig(data="", out=str(tmp_path / "run")), resume=True, resume_epochs=2)
    assert history(tmp_path / "run")["epoch"].tolist() == [1, 2]
    assert read_checkpoint(tmp_path / "run" / "last.pt")["meta"]["config"]["epochs"] == 2


@pytest.mark.parametrize("cut_in_epoch", [2, 3])  # the last warm-up epoch, and the first after it
@pytest.mark.slow
def test_staged_fine_tuning_unfreezes_after_the_warm_up_and_resumes_across_it(small_ham, tmp_path, monkeypatch, cut_in_epoch):
    staged = {"model": "resnet18", "pretrained": False, "input_size": 32, "warmup_epochs": 2, "epochs": 4}
    real_epoch, trained = training.train_one_epoch, []

    def recording(model, *args, **kwargs):
        trained.append(sum(p.numel() for p in model.parameters() if p.requires_grad))
        return real_epoch(model, *args, **kwargs)

    monkeypatch.setattr(training, "train_one_epoch", recording)
    training.train(config(small_ham, tmp_path / "whole", **staged))
    head = 512 * 7 + 7
    assert trained[:2] == [head, head] and trained[2] == trained[3] > 11_000_000  # the head alone, then all of ResNet18
    lrs = history(tmp_path / "whole")["lr"].tolist()  # after each epoch's cosine step, over each stage's own epochs
    assert lrs[:2] == pytest.approx([0.5e-3, 0]) and lrs[2:] == pytest.approx([0.5e-4, 0])  # --finetune-lr defaults to lr / 10

    def interrupt(*args, **kwargs):
        if len(trained) == 4 + cut_in_epoch:
            raise KeyboardInterrupt
        return recording(*args, **kwargs)

    monkeypatch.setattr(training, "train_one_epoch", interrupt)
    with pytest.raises(training.Interrupted):
        training.train(config(small_ham, tmp_path / "cut", **staged))
    monkeypatch.setattr(training, "train_one_epoch", real_epoch)
    training.train(TrainConfig(data="", out=str(tmp_path / "cut")), resume=True)
    pd.testing.assert_frame_equal(history(tmp_path / "whole"), history(tmp_path / "cut"))
    assert same_weights(weights(tmp_path / "whole" / "last.pt"), weights(tmp_path / "cut" / "last.pt"))


def test_staged_fine_tuning_refuses_what_cannot_work():
    with pytest.raises(DermcliError, match="needs a model with a backbone"):
        TrainConfig(data="x", out="y", model="cnn", warmup_epochs=2).resolved()
    with pytest.raises(DermcliError, match="leaves no epoch to fine-tune"):
        TrainConfig(data="x", out="y", model="resnet18", warmup_epochs=5, epochs=5).resolved()
    with pytest.raises(DermcliError, match="use --freeze none"):
        TrainConfig(data="x", out="y", model="resnet18", warmup_epochs=1, freeze="backbone").resolved()
