"""TensorBoard logging of `train` and `eval`, read back with TensorBoard's own event reader; the tracking object's
rules (rank 0 only, a failing backend dropped, a fresh run's old event files gone); and a cold start that never
imports the backends."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import dermcli.training.run as training
from dermcli.core.errors import DermcliError
from dermcli.evaluation.evaluate import evaluate
from dermcli.evaluation.report import write_reports
from dermcli.models.checkpoint import read_checkpoint
from dermcli.runtime.tracking import TENSORBOARD_FOLDER, Tracking, open_tracking, split_digest
from dermcli.training.config import TrainConfig
from dermcli.training.crossval import train_folds
from tests.conftest import REPO, make_ham


@pytest.fixture(scope="module")
def small_ham(tmp_path_factory):
    return make_ham(tmp_path_factory.mktemp("small"), lesions_per_class=5, images_per_lesion=2)


@pytest.fixture(scope="module")
def tb_run(small_ham, tmp_path_factory):
    """A 2-epoch CNN run with TensorBoard (on by default), then evaluated on its test split into RUN/eval."""
    pytest.importorskip("tensorboard")
    run = tmp_path_factory.mktemp("tracked") / "cnn"
    training.train(TrainConfig(data=str(small_ham), out=str(run), model="cnn", epochs=2, batch_size=16, scheduler="cosine"))
    evaluate(run / "best.pt", small_ham, run / "eval")
    write_reports(run / "eval")
    return run


def events(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def test_the_event_files_hold_history_csv_epoch_by_epoch(tb_run):
    logged, history = events(tb_run / TENSORBOARD_FOLDER), pd.read_csv(tb_run / "history.csv")
    for column in history.columns.drop("epoch"):
        scalars = logged.Scalars(column)
        assert [s.step for s in scalars] == history["epoch"].tolist(), column
        np.testing.assert_allclose([s.value for s in scalars], history[column], rtol=1e-6, err_msg=column)  # float32 in the file
    assert {"val_macro_f1", "val_macro_auc", "val_loss", "lr", "train_loss"} <= set(history.columns)
    throughput = [s.value for s in logged.Scalars("images_per_second")]
    train_images = (pd.read_csv(tb_run / "split.csv")["split"] == "train").sum()
    np.testing.assert_allclose(throughput, train_images / history["seconds"], rtol=1e-5)


def test_the_calibration_config_and_eval_figures_follow_the_last_epoch(tb_run):
    logged, meta = events(tb_run / TENSORBOARD_FOLDER), read_checkpoint(tb_run / "best.pt")["meta"]
    for key in ("temperature", "threshold"):
        (scalar,) = logged.Scalars(key)
        assert scalar.step == 2 and scalar.value == pytest.approx(meta[key], rel=1e-6)
    (config,) = logged.Tensors("config/text_summary")
    assert '"model": "cnn"' in config.tensor_proto.string_val[0].decode()
    metrics = pd.read_json(tb_run / "eval" / "metrics.json", typ="series")
    (macro_f1,) = logged.Scalars("test/macro_f1")
    assert macro_f1.step == 2 and macro_f1.value == pytest.approx(metrics["multiclass"]["macro_f1"], rel=1e-6)
    assert {"test/confusion_matrix", "test/roc_pr"} <= set(logged.Tags()["images"])
    (confusion,) = logged.Images("test/confusion_matrix")
    assert confusion.step == 2 and confusion.width > 100


def test_cross_validation_logs_each_fold_and_the_summary_with_the_out_of_fold_eval(small_ham, tmp_path):
    pytest.importorskip("tensorboard")
    run = tmp_path / "cv"
    train_folds(TrainConfig(data=str(small_ham), out=str(run), model="cnn", epochs=1, batch_size=16), 2)
    summary = json.loads((run / "cv_summary.json").read_text())
    logged = events(run / TENSORBOARD_FOLDER)
    (mean,) = logged.Scalars("cv/macro_f1_mean")
    assert mean.value == pytest.approx(summary["mean"]["macro_f1"], rel=1e-6)
    assert "oof/confusion_matrix" in logged.Tags()["images"] and "oof/macro_f1" in logged.Tags()["scalars"]
    for k in (1, 2):
        fold = events(run / f"fold_{k}" / TENSORBOARD_FOLDER)
        (val,) = fold.Scalars("val/macro_f1")
        assert val.value == pytest.approx(summary["per_fold"]["macro_f1"][k - 1], rel=1e-6)
        assert [s.step for s in fold.Scalars("train_loss")] == [1]


def test_a_run_without_tensorboard_and_a_rank_other_than_0_write_nothing(tmp_path):
    pytest.importorskip("tensorboard")
    assert TrainConfig().tensorboard is True  # on by default
    for tracking in (open_tracking(tmp_path, {"tensorboard": False}), open_tracking(tmp_path, {"tensorboard": True}, main=False)):
        tracking.log_epoch(1, {"train_loss": 1.0})
        tracking.close()
        assert tracking.sinks == []
    assert not (tmp_path / TENSORBOARD_FOLDER).exists()


def test_a_fresh_run_drops_an_overwritten_runs_event_files_and_a_resumed_one_keeps_them(tmp_path):
    pytest.importorskip("tensorboard")
    for resume, logged, expected in ((False, [1, 2], [1, 2]), (True, [3], [1, 2, 3]), (False, [1], [1])):
        tracking = open_tracking(tmp_path, {"tensorboard": True}, resume=resume)
        for epoch in logged:
            tracking.log_epoch(epoch, {"train_loss": float(epoch)})
        tracking.close()
        assert [s.step for s in events(tmp_path / TENSORBOARD_FOLDER).Scalars("train_loss")] == expected


class Failing:
    name = "Broken"

    def log_epoch(self, epoch, metrics):
        raise ConnectionError("server gone")


def test_a_failing_backend_is_one_warning_and_then_left_out():
    said = []
    tracking = Tracking([Failing()], log=said.append)
    tracking.log_epoch(1, {"train_loss": 1.0})
    tracking.log_epoch(2, {"train_loss": 0.5})
    tracking.close()
    assert tracking.last_epoch == 2 and len(said) == 1
    assert said[0].startswith("warning: Broken logging failed (ConnectionError: server gone)")


class Recorder:
    name = "Recorder"

    def __init__(self):
        self.closed_finished = []

    def log_final(self, step, metrics, figures, files, folder):
        pass

    def close(self, finished):
        self.closed_finished.append(finished)


def test_a_session_stopped_before_its_final_figures_closes_as_unfinished():
    stopped, done = Recorder(), Recorder()
    Tracking([stopped]).close()
    tracking = Tracking([done])
    tracking.log_final({"temperature": 1.0})
    tracking.close()
    assert (stopped.closed_finished, done.closed_finished) == ([False], [True])


def test_mlflow_takes_local_or_a_uri():
    with pytest.raises(DermcliError, match="--mlflow 'mlruns': give local"):
        TrainConfig(mlflow="mlruns").resolved()


def test_the_split_digest_names_the_split_not_its_file(tmp_path):
    split = pd.DataFrame({"image_id": ["a", "b", "c"], "lesion_id": ["1", "2", "3"], "label": ["nv"] * 3, "split": ["train", "val", "test"]})
    split.to_csv(tmp_path / "plain.csv", index=False)
    split.assign(pixels_28px=["x", "y", "z"]).iloc[::-1].to_csv(tmp_path / "with_digests.csv", index=False)
    split.assign(split=["val", "train", "test"]).to_csv(tmp_path / "other.csv", index=False)
    assert split_digest(tmp_path / "plain.csv") == split_digest(tmp_path / "with_digests.csv") != split_digest(tmp_path / "other.csv")
    assert split_digest(tmp_path / "missing.csv") is None


def test_help_and_a_cold_predict_never_import_the_backends():
    probe = ("import atexit, sys\n"
             "atexit.register(lambda: print('loaded:', sorted({m.split('.')[0] for m in sys.modules} & {'tensorboard', 'mlflow'})))\n"
             "sys.argv = ['dermcli', *sys.argv[1:]]\n"
             "from dermcli.__main__ import main\n"
             "main()\n")
    for args in (["--help"], ["runs", "--help"], ["predict", str(REPO / "examples" / "ISIC_0026531.jpg"), "--model", "cnn"]):
        result = subprocess.run([sys.executable, "-c", probe, *args], check=False, capture_output=True, text=True, cwd=REPO, timeout=300)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip().endswith("loaded: []"), (args, result.stdout[-300:])
