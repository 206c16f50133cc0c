"""Training: split, build, fit with early stopping, then calibrate on validation. Resumable from last.pt."""

import functools
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dermcli.core.errors import DermcliError
from dermcli.core.files import write_text
from dermcli.core.labels import class_names, task_targets
from dermcli.data.images import training_resolution
from dermcli.data.overlap import record_digests
from dermcli.data.split import GROUPLESS_WARNING, has_group_ids, select
from dermcli.models.checkpoint import save_checkpoint
from dermcli.models.registry import get_backend
from dermcli.runtime.devices import NonFiniteLoss, Precision
from dermcli.runtime.tracking import Tracking
from dermcli.training.calibrate import calibrate
from dermcli.training.config import TrainConfig
from dermcli.training.distill import DistillationLoss, teacher_logits
from dermcli.training.ema import WeightAverage
from dermcli.training.features import trainable_inputs
from dermcli.training.job import Interrupted, Job, build_model, run_split, start_job
from dermcli.training.loop import load_scheduler_state, train_one_epoch, validation_logits
from dermcli.training.objectives import loss_function, validation_metrics
from dermcli.training.stages import build_stage, stage_number
from dermcli.training.tracking import epoch_figures, log_trained, open_run


@dataclass
class Data:
    split: pd.DataFrame
    rows: tuple[pd.DataFrame, pd.DataFrame]  # train, val
    y_train: np.ndarray
    y_val: np.ndarray

    @property
    def paths(self) -> tuple[list[str], list[str]]:
        return self.rows[0]["path"].tolist(), self.rows[1]["path"].tolist()


@dataclass
class Fit:
    """What changes from epoch to epoch, and what each epoch uses."""

    model: torch.nn.Module
    parts: object  # freeze -> (frozen, trainable), one fx cut per --freeze value
    stage: object
    rng: np.random.Generator
    average: WeightAverage | None
    stopping: dict
    history: list
    loss_fn: object
    y_train: torch.Tensor  # labels, or row indices when distilling
    meta: dict
    precision: Precision  # one for the run: under fp16 its loss scale carries from step to step
    start_epoch: int
    epoch: int = 0

    @property
    def evaluated(self) -> torch.nn.Module:
        """What validation scores and best.pt stores: the weights' moving average under --ema."""
        return self.average.model if self.average else self.model

    @property
    def evaluated_trainable(self) -> torch.nn.Module:
        return self.average.trainable if self.average else self.stage.trainable


def train(cfg: TrainConfig, resume: bool = False, overwrite: bool = False, resume_epochs: int | None = None, track=None,
          log=lambda msg: None, device: str = "auto") -> Path:
    """Train into cfg.out on `device`; returns the path of best.pt.

    With `resume`, continue from cfg.out/last.pt with its stored config (on any device); `resume_epochs`
    changes the total number of epochs (to extend a run, or to end it early and calibrate).
    """
    job = start_job(cfg, resume, overwrite, resume_epochs, track, log, device)
    model, parts = build_model(job)
    data = load_data(job, resume)
    fit = prepare_fit(job, data, model, parts)
    tracking = open_run(job.cfg, job.out, resume, job.world.main, job.log)
    calibrating = False
    try:
        fit_epochs(job, data, fit, tracking)
        calibrating = True
        best = calibrate_run(job, data, fit)
        log_trained(tracking, best)
        return best
    except KeyboardInterrupt:
        moment = "while calibrating" if calibrating else f"in epoch {fit.epoch}"
        raise Interrupted(f"interrupted {moment}; last.pt holds the last finished epoch: resume with `dermcli train --resume {job.out}`") from None
    except NonFiniteLoss:
        kept = f"last.pt holds epoch {fit.epoch - 1}, the last good one" if fit.epoch > 1 else "no epoch had finished"
        raise DermcliError(f"the loss became NaN or infinite in epoch {fit.epoch}: stopped; {kept} "
                           f"(try a lower --lr{', or --amp none' if job.amp != 'none' else ''})") from None
    finally:
        tracking.close()


def load_data(job: Job, resume: bool) -> Data:
    """The data set, the run's split (checked against the data's lesion ids) and the targets of its train and val images."""
    cfg, log, table = job.cfg, job.log, job.table
    with job.world.main_first():
        split = run_split(cfg, table, job.out, resume, job.world)
    source = cfg.split_file if cfg.split_file and not resume else str(job.out / "split.csv")
    rows = select(table, split, "train", source), select(table, split, "val", source)
    log(f"split (lesion-level, seed {cfg.split_seed}): " + ", ".join(f"{s} {n}" for s, n in split["split"].value_counts().items()))
    if not has_group_ids(table):
        log(GROUPLESS_WARNING.format(data=cfg.data))
    classes, malignant = job.labels.classes, job.labels.malignant or ()
    return Data(split, rows, *(np.array(task_targets(r["dx"], cfg.task, classes, malignant)) for r in rows))


def checkpoint_meta(job: Job, data: Data) -> dict:
    cfg = job.cfg
    labels = job.labels
    return {"backend": cfg.model, "task": cfg.task, "class_names": list(class_names(cfg.task, labels.classes)),
            # the benign/malignant view: the malignant classes (None: none), and for a binary model its data's classes
            "malignant": ["malignant"] if cfg.task == "binary" else None if labels.malignant is None else list(labels.malignant),
            "data_classes": list(labels.classes), "data_malignant": list(labels.malignant or ()), "input_size": cfg.input_size,
            "preprocessing": cfg.preprocessing, "model_options": cfg.model_options(), "threshold": 0.5, "temperature": 1.0,
            "config": asdict(cfg), "split_seed": cfg.split_seed, "amp": job.amp,
            "training_resolution": training_resolution(data.paths[0])}  # what predict, eval and explain bring larger inputs down to


def prepare_fit(job: Job, data: Data, model, parts) -> Fit:
    """The first stage's inputs and optimiser, the loss, the config record, and a resumed run's training state."""
    cfg, world, track = job.cfg, job.world, job.track
    job.log(f"training on {job.where}" + (f" with {job.amp} autocast" if job.amp != "none" else "")
            + (f", {world.size} processes, global batch {world.size} x {cfg.batch_size}" if world.size > 1 else ""))
    start_epoch = job.state["training_state"]["epoch"] + 1 if job.state else 1
    stage = build_stage(stage_number(cfg, min(start_epoch, cfg.epochs)), cfg, model, parts, *data.paths, track, world)
    if world.main:
        record_digests(job.out / "split.csv", data.split, list(data.rows), cfg.input_size, track)
        write_text(job.out / "config.json", json.dumps(asdict(cfg), indent=2) + "\n")
    average = WeightAverage(model, lambda m: get_backend(cfg.model).split_frozen(m, cfg.freeze)[1], cfg.ema) if cfg.ema else None
    loss_fn, y_train = loss_function(cfg, data.y_train, job.where, len(job.labels.classes)), torch.from_numpy(data.y_train)
    if cfg.teacher:  # the loss then takes row indices, and finds labels and teacher logits by them
        with world.main_first():
            teacher = teacher_logits(Path(cfg.teacher), data.paths[0], cfg.augment, list(class_names(cfg.task, job.labels.classes)), track, job.log)
        loss_fn = DistillationLoss(loss_fn, y_train, teacher, stage.train_in, cfg.distill_weight, cfg.distill_temperature)
        y_train = torch.arange(len(data.y_train))
    fit = Fit(model, parts, stage, np.random.default_rng(cfg.seed), average, {"best": -np.inf, "best_epoch": 0, "bad_epochs": 0}, [],
              loss_fn, y_train, checkpoint_meta(job, data), Precision(job.amp, job.where), start_epoch, start_epoch - 1)
    if job.state is not None:
        restore(fit, job.state["training_state"], job.where)
    return fit


def restore(fit: Fit, ts: dict, where: torch.device) -> None:
    """A resumed run's optimiser, scheduler, generators, early stopping, history and weight average."""
    if ts.get("stage", 1) == fit.stage.number:  # a run stopped at the end of the warm-up starts its second stage afresh
        fit.stage.optimizer.load_state_dict(ts["optimizer"])
        load_scheduler_state(fit.stage.scheduler, ts["scheduler"])
    fit.rng.bit_generator.state = ts["numpy_rng"]
    torch.set_rng_state(ts["torch_rng"])
    if where.type == "cuda" and "cuda_rng" in ts:
        torch.cuda.set_rng_state_all(ts["cuda_rng"])
    fit.stopping, fit.history = ts["stopping"], ts["history"]
    if fit.average:
        fit.average.model.load_state_dict(ts["ema"]["state_dict"])
        fit.average.steps = ts["ema"]["steps"]


def fit_epochs(job: Job, data: Data, fit: Fit, tracking: Tracking) -> None:
    """Epochs from fit.start_epoch until --epochs or early stopping; each one's files written as it ends."""
    cfg, track = job.cfg, job.track
    epochs = range(fit.start_epoch, cfg.epochs + 1)
    for fit.epoch in track(epochs, "epochs", len(epochs)) if track else epochs:
        if fit.stopping["bad_epochs"] >= cfg.patience:
            break
        if stage_number(cfg, fit.epoch) != fit.stage.number:
            job.log(f"epoch {fit.epoch}: warm-up over, training down to --freeze {cfg.freeze} at lr {cfg.finetune_lr:g}")
            fit.stage = build_stage(stage_number(cfg, fit.epoch), cfg, fit.model, fit.parts, *data.paths, track, job.world)
        t0 = time.perf_counter()
        precision = fit.precision
        train_loss = train_one_epoch(fit.stage.fitted, fit.stage.train_in, fit.y_train, fit.loss_fn, fit.stage.optimizer, fit.rng,
                                     cfg.batch_size, track, after_step=fit.average.update if fit.average else None, precision=precision,
                                     world=job.world)
        val = validation_metrics(data.y_val, validation_logits(fit.evaluated_trainable, fit.stage.val_in, precision, job.world), cfg.task)
        selection = next(iter(val.values()))
        fit.stage.scheduler.step(selection) if cfg.scheduler == "plateau" else fit.stage.scheduler.step()
        fit.history.append({"epoch": fit.epoch, "train_loss": train_loss, **{f"val_{k}": v for k, v in val.items()},
                            "lr": fit.stage.optimizer.param_groups[0]["lr"], "seconds": round(time.perf_counter() - t0, 2)})
        improved = selection > fit.stopping["best"]
        fit.stopping = {"best": selection if improved else fit.stopping["best"], "best_epoch": fit.epoch if improved else fit.stopping["best_epoch"],
                        "bad_epochs": 0 if improved else fit.stopping["bad_epochs"] + 1}
        if job.world.main:
            save_epoch(job, fit, val, improved)
        tracking.log_epoch(fit.epoch, epoch_figures(fit.history[-1], len(data.y_train)))
        job.log(f"epoch {fit.epoch}: train loss {train_loss:.4f}, " + ", ".join(f"val {k} {v:.4f}" for k, v in val.items()) + (" *" if improved else ""))


def save_epoch(job: Job, fit: Fit, val: dict, improved: bool) -> None:
    """history.csv, best.pt when the epoch improved, and last.pt with everything a resume restores."""
    write_text(job.out / "history.csv", pd.DataFrame(fit.history).to_csv(index=False))
    meta = {**fit.meta, "epoch": fit.epoch, "val_metrics": val}
    if improved:
        save_checkpoint(job.out / "best.pt", fit.evaluated, meta)
    stage, cuda = fit.stage, job.where.type == "cuda"
    training_state = {"stage": stage.number, "optimizer": stage.optimizer.state_dict(), "scheduler": stage.scheduler.state_dict(),
                      "numpy_rng": fit.rng.bit_generator.state, "processes": job.world.size,
                      "torch_rng": torch.get_rng_state(), "stopping": fit.stopping, "history": fit.history, "epoch": fit.epoch,
                      **({"cuda_rng": torch.cuda.get_rng_state_all()} if cuda else {}),
                      **({"ema": {"state_dict": fit.average.model.state_dict(), "steps": fit.average.steps}} if fit.average else {})}
    save_checkpoint(job.out / "last.pt", fit.model, meta, training_state)


def calibrate_run(job: Job, data: Data, fit: Fit) -> Path:
    """Rank 0 fits temperature, threshold and unusual-image statistics of best.pt on the whole validation split."""
    best = job.out / "best.pt"
    if not job.world.main:
        return best
    cfg, frozen = job.cfg, fit.parts(job.cfg.freeze)[0]
    inputs = functools.partial(trainable_inputs, cfg, cfg.freeze, frozen, training=False, track=job.track, device=job.where)
    val_in = fit.stage.val_in if fit.stage.freeze == cfg.freeze else inputs(data.paths[1])  # stopped in the warm-up
    return calibrate(best, cfg, val_in, data.y_val, job.log, (inputs(data.paths[0]), data.y_train))
