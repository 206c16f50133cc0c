"""MLflow logging against a real `mlflow server` started here (a SQLite store and an artifact folder in a temporary
folder): params, per-epoch metrics, tags and artifacts read back with MLflow's client; a resumed run and an eval
continue the same MLflow run; an unreachable server is one warning, and training completes; `--mlflow local`."""

import json
import socket
import subprocess
import sys
import time
import urllib.request

import pandas as pd
import pytest

import dermcli.training.run as training
from dermcli.evaluation.evaluate import evaluate
from dermcli.evaluation.report import write_reports
from dermcli.runtime.tracking import MLFLOW_RECORD, open_tracking, split_digest
from dermcli.training.config import TrainConfig
from tests.conftest import make_ham

pytestmark = pytest.mark.slow  # real servers: left out of the quick `-m "not slow"` subset

mlflow = pytest.importorskip("mlflow")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The tracking server's URI, up until the module's tests are done."""
    root, port = tmp_path_factory.mktemp("mlflow_server"), free_port()
    uri = f"http://127.0.0.1:{port}"
    with open(root / "server.log", "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
                                    "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
                                    "--workers", "1"], stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(240):
            try:
                if urllib.request.urlopen(f"{uri}/health", timeout=2).status == 200:
                    break
            except OSError:
                if process.poll() is not None:
                    break
                time.sleep(0.5)
        else:
            pytest.fail("mlflow server did not start: " + (root / "server.log").read_text()[-2000:])
        assert process.poll() is None, (root / "server.log").read_text()[-2000:]
        yield uri
    finally:
        process.terminate()
        process.wait(timeout=60)


@pytest.fixture(scope="module")
def small_ham(tmp_path_factory):
    return make_ham(tmp_path_factory.mktemp("small"), lesions_per_class=5, images_per_lesion=2)


def config(data, out, **changes):
    return TrainConfig(data=str(data), out=str(out), model="cnn", batch_size=16, tensorboard=False, **changes)


def metric_steps(client, run_id: str, key: str) -> dict[int, float]:
    return {m.step: m.value for m in client.get_metric_history(run_id, key)}


def test_a_run_logs_to_the_server_and_its_resume_and_eval_continue_the_same_run(server, small_ham, tmp_path):
    from mlflow.tracking import MlflowClient

    run = tmp_path / "cnn"
    training.train(config(small_ham, run, epochs=1, mlflow=server))
    run_id = json.loads((run / MLFLOW_RECORD).read_text())["run_id"]
    training.train(TrainConfig(out=str(run)), resume=True, resume_epochs=2)
    assert json.loads((run / MLFLOW_RECORD).read_text())["run_id"] == run_id
    evaluate(run / "best.pt", small_ham, run / "eval")
    write_reports(run / "eval")

    client = MlflowClient(server)
    logged = client.get_run(run_id).data
    assert logged.params["model"] == "cnn" and logged.params["epochs"] == "1" and logged.params["mlflow"] == server
    assert logged.tags["dermcli.split_digest"] == split_digest(run / "split.csv")
    assert logged.tags["dermcli.data"] == str(small_ham) and len(logged.tags["mlflow.source.git.commit"]) == 40
    history = pd.read_csv(run / "history.csv")
    for column in ("train_loss", "val_macro_f1", "val_loss", "lr"):
        assert metric_steps(client, run_id, column) == pytest.approx(dict(zip(history["epoch"], history[column]))), column
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    assert metric_steps(client, run_id, "test/macro_f1") == pytest.approx({2: metrics["multiclass"]["macro_f1"]})
    assert set(metric_steps(client, run_id, "temperature")) == {1, 2}  # calibrated after each part
    files = {f.path for f in client.list_artifacts(run_id)} | {f.path for f in client.list_artifacts(run_id, "eval")}
    assert {"best.pt", "config.json", "history.csv", "split.csv", "eval/metrics.json", "eval/confusion_matrix.png"} <= files
    assert client.get_run(run_id).info.status == "FINISHED"


def test_an_unreachable_server_is_one_warning_and_training_completes(small_ham, tmp_path):
    said, uri = [], f"http://127.0.0.1:{free_port()}"  # nothing listens there
    best = training.train(config(small_ham, tmp_path / "cnn", epochs=1, mlflow=uri), log=said.append)
    assert best.is_file() and pd.read_csv(tmp_path / "cnn" / "history.csv")["epoch"].tolist() == [1]
    warnings = [line for line in said if line.startswith("warning: MLflow")]
    assert len(warnings) == 1 and uri in warnings[0] and "\n" not in warnings[0]
    assert not (tmp_path / "cnn" / MLFLOW_RECORD).exists()


def test_local_is_a_file_store_in_the_working_folder(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # as the sink sets it; here for the reading client too
    tracking = open_tracking(tmp_path / "run", {"model": "cnn", "mlflow": "local"})
    tracking.log_epoch(1, {"train_loss": 0.5})
    tracking.close()
    record = json.loads((tmp_path / "run" / MLFLOW_RECORD).read_text())
    assert record["tracking_uri"] == (tmp_path / "mlruns").as_uri() and (tmp_path / "mlruns").is_dir()
    client = MlflowClient(record["tracking_uri"])
    assert client.get_run(record["run_id"]).data.params["model"] == "cnn"
    assert metric_steps(client, record["run_id"], "train_loss") == {1: 0.5}
