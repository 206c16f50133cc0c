"""Where a run's figures go besides its folder: TensorBoard event files in RUN/tb and an MLflow run.

Both backends are an extra (`pip install "dermcli[track]"`), imported only when a run uses them, so `--help` and a cold
`predict` never load them. Only rank 0 writes. A backend that fails (an MLflow server out of reach) costs one warning
and the run goes on without it: the run folder stays the record. A resumed run, and an eval of the run, continue the
same TensorBoard folder and the same MLflow run, whose id RUN/mlflow.json keeps.
"""

import csv
import hashlib
import json
import os
import subprocess
import sys
import time
from importlib.util import find_spec
from pathlib import Path

from dermcli.core.files import write_text

TENSORBOARD_FOLDER = "tb"
MLFLOW_RECORD = "mlflow.json"
LOCAL_STORE = "local"  # --mlflow local: a file store in ./mlruns
EXPERIMENT = "dermcli"  # MLflow's experiment, unless MLFLOW_EXPERIMENT_NAME names another


def warn(message: str) -> None:
    print(message, file=sys.stderr)


class Tracking:
    """The run's open backends (none when tracking is off, or on a rank other than 0). Figures logged after the epochs
    (calibration, an eval's) are placed at the run's last epoch, so they sit at the end of its curves; a session that
    logged none (stopped in an epoch) closes its MLflow run as KILLED, not FINISHED."""

    def __init__(self, sinks=(), last_epoch: int = 0, log=warn):
        self.sinks, self.last_epoch, self.log, self.finished = list(sinks), last_epoch, log, False

    def log_epoch(self, epoch: int, metrics: dict) -> None:
        self.last_epoch = epoch
        self._each("log_epoch", epoch, metrics)

    def log_final(self, metrics: dict, figures: dict | None = None, files=(), folder: str | None = None) -> None:
        """`metrics` as scalars, `figures` ({tag: PNG}) as TensorBoard images, and the figures and `files` as MLflow
        artifacts under `folder`."""
        self._each("log_final", self.last_epoch, metrics, {tag: Path(p) for tag, p in (figures or {}).items()}, [Path(f) for f in files], folder)
        self.finished = True

    def close(self) -> None:
        self._each("close", self.finished)
        self.sinks = []

    def _each(self, method: str, *args) -> None:
        for sink in list(self.sinks):
            try:
                getattr(sink, method)(*args)
            except Exception as e:  # whatever a backend raises (network, store, disk): training must not stop for it
                self.log(f"warning: {sink.name} logging failed ({type(e).__name__}: {e}); no more logging there, the run folder keeps the record")
                self.sinks.remove(sink)


def open_tracking(folder: Path, config: dict, *, resume: bool = False, main: bool = True, log=warn) -> Tracking:
    """The backends `config` asks for (its `tensorboard` and `mlflow` entries) for the run in `folder`. With `resume`
    the run's own TensorBoard folder and MLflow run are continued; without, they start afresh (an --overwrite run's
    old event files go)."""
    folder = Path(folder)
    if not main:
        return Tracking()
    history = read_history(folder) if resume else []
    wanted = []
    if config.get("tensorboard") and find_spec("tensorboard") is not None:  # on by default, where it is installed
        wanted.append(("TensorBoard", lambda: TensorBoardSink(folder / TENSORBOARD_FOLDER, config, resume)))
    if config.get("mlflow"):
        wanted.append((f"MLflow at {config['mlflow']}", lambda: MlflowSink(folder, config, resume, history)))
    sinks = []
    for name, start in wanted:
        try:
            sinks.append(start())
        except ImportError as e:
            log(f"warning: {name} needs {e.name or 'its package'}, of dermcli's track extra: this run is not logged there")
        except Exception as e:  # an unreachable server, a refused store, a folder not writable: one line, and the run goes on
            first_line = (str(e).strip().splitlines() or [""])[0][:200]
            log(f"warning: {name} cannot be used ({type(e).__name__}: {first_line}); the run goes on, its folder keeps the record")
    return Tracking(sinks, int(history[-1]["epoch"]) if history else 0, log)


class TensorBoardSink:
    name = "TensorBoard"

    def __init__(self, folder: Path, config: dict, resume: bool):
        from torch.utils.tensorboard import SummaryWriter  # here: an extra, and a second to import
        from torch.utils.tensorboard.summary import hparams

        if not resume:
            for old in folder.glob("events.out.tfevents.*"):
                old.unlink()
        self.writer = SummaryWriter(str(folder))
        if not resume:
            self.writer.add_text("config", "    " + json.dumps(config, indent=2).replace("\n", "\n    "))  # indented: Markdown code
            _, session_start, _ = hparams({k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in config.items()}, {})
            self.writer.file_writer.add_summary(session_start)  # the HParams tab's row; its metrics are the run's scalars

    def log_epoch(self, epoch: int, metrics: dict) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, epoch)
        self.writer.flush()  # each epoch on disk as it ends: a live `tensorboard` sees it, a crash loses nothing

    def log_final(self, step: int, metrics: dict, figures: dict, files: list, folder: str | None) -> None:
        import numpy as np  # here, as everything heavy
        from PIL import Image

        self.log_epoch(step, metrics)
        for tag, png in figures.items():
            with Image.open(png) as image:
                self.writer.add_image(tag, np.asarray(image.convert("RGB")), step, dataformats="HWC")
        self.writer.flush()

    def close(self, finished: bool) -> None:
        self.writer.close()


class MlflowSink:
    name = "MLflow"

    def __init__(self, folder: Path, config: dict, resume: bool, history: list[dict]):
        # A server out of reach should cost seconds, not MLflow's default minutes of retries; the user's settings win.
        # And stdout is dermcli's output, where MLflow would print each run's address.
        for variable, value in (("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2"), ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1"),
                                ("MLFLOW_HTTP_REQUEST_TIMEOUT", "20"), ("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")):
            os.environ.setdefault(variable, value)
        from mlflow.entities import Param  # here: an extra, and slow to import
        from mlflow.tracking import MlflowClient

        record = folder / MLFLOW_RECORD
        stored = json.loads(record.read_text()) if resume and record.is_file() else None
        uri = stored["tracking_uri"] if stored else tracking_uri(config["mlflow"])
        if uri.startswith("file:"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 refuses file stores unless asked; ./mlruns needs no database
        self.client = MlflowClient(uri)
        if stored:
            self.run_id = stored["run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
            return
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME", EXPERIMENT)
        experiment = self.client.get_experiment_by_name(name)
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(name)
        self.run_id = self.client.create_run(experiment_id, run_name=folder.resolve().name, tags=run_tags(folder, config)).info.run_id
        self.client.log_batch(self.run_id, params=[Param(k, str(v)) for k, v in config.items()])
        write_text(record, json.dumps({"tracking_uri": uri, "experiment_id": experiment_id, "run_id": self.run_id}, indent=2) + "\n")
        for row in history:  # a run resumed (or evaluated) where MLflow was out of reach before: its epochs so far
            self.log_epoch(int(row["epoch"]), {k: v for k, v in row.items() if k != "epoch"})

    def log_epoch(self, epoch: int, metrics: dict) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, epoch) for k, v in metrics.items()])

    def log_final(self, step: int, metrics: dict, figures: dict, files: list, folder: str | None) -> None:
        if metrics:
            self.log_epoch(step, metrics)
        for path in [*figures.values(), *files]:
            self.client.log_artifact(self.run_id, str(path), folder)

    def close(self, finished: bool) -> None:
        self.client.set_terminated(self.run_id, "FINISHED" if finished else "KILLED")


def tracking_uri(asked: str) -> str:
    """--mlflow's value as MLflow's tracking URI: `local` is ./mlruns (absolute, so that an eval run from another
    folder finds the same store)."""
    return (Path.cwd() / "mlruns").as_uri() if asked == LOCAL_STORE else asked


def run_tags(folder: Path, config: dict) -> dict:
    """What tells runs apart beyond their options: the data set, the split and the code that trained."""
    return {"dermcli.data": str(config.get("data", "")), "dermcli.split_digest": split_digest(folder / "split.csv") or "",
            "mlflow.source.git.commit": code_commit()}


def split_digest(path: Path) -> str | None:
    """The split's identity: the start of the SHA-256 of its sorted image_id,split pairs, so that one split has one
    digest whatever pixel-digest columns its file carries; None without a split file."""
    if not Path(path).is_file():
        return None
    with open(path, newline="", encoding="utf-8") as f:
        pairs = sorted(f"{row['image_id']},{row['split']}" for row in csv.DictReader(f))
    return hashlib.sha256("\n".join(pairs).encode()).hexdigest()[:12]


def code_commit() -> str:
    """The git commit of dermcli's source, when it runs from a checkout; "" otherwise."""
    try:
        done = subprocess.run(["git", "-C", str(Path(__file__).parent), "rev-parse", "HEAD"], check=False, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def read_history(folder: Path) -> list[dict]:
    """history.csv's rows, numbers as floats (and the epoch an int); [] without one."""
    path = Path(folder) / "history.csv"
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: int(v) if k == "epoch" else float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]
