"""Training: split, build, fit with early stopping, then calibrate on validation. Resumable from last.pt."""

import functools
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dermcli.batches import ImageBatches, Rows, channels_last, frozen_features, predict_logits, rows_of
from dermcli.calibration import calibrate
from dermcli.checkpoint import num_outputs, read_checkpoint, round_to_half, save_checkpoint
from dermcli.config import TrainConfig
from dermcli.data.dataset import load_dataset
from dermcli.data.cache import cached_images
from dermcli.data.overlap import record_digests
from dermcli.data.split import GROUPLESS_WARNING, has_group_ids, load_split, make_split, save_split, select
from dermcli.distill import DistillationLoss, ViewRecordingBatches, check_teacher, geometric_views, teacher_logits
from dermcli.distributed import World, start as join_job
from dermcli.devices import NonFiniteLoss, Precision, module_device, resolve_amp, resolve_device
from dermcli.errors import DermcliError
from dermcli.io import ensure_writable_dir, write_text
from dermcli.labels import class_names, task_targets
from dermcli.models import get_backend
from dermcli.objectives import loss_function, validation_metrics
from dermcli.weight_average import WeightAverage

RUN_FILES = ("best.pt", "last.pt", "history.csv", "split.csv", "config.json")


class Interrupted(DermcliError):
    exit_code = 130


def train_one_epoch(model, batches, y: torch.Tensor, loss_fn, optimizer, rng, batch_size: int, track=None, after_step=None,
                    precision: Precision | None = None, world: World = World()) -> float:
    """One pass over `batches` in random order on the model's device; `after_step()` runs after every optimizer step.

    Under torchrun `batch_size` is per process: all processes draw the same order from the shared seed, and each
    takes its share (World.part) of every global batch of batch_size x processes rows."""
    model.train()
    device = module_device(model)
    precision = precision or Precision("none", device)
    order = rng.permutation(len(batches))
    step = batch_size * world.size
    starts = [s for s in range(0, len(order), step) if len(order) - s >= 2 * world.size]  # one row per process would break BatchNorm
    total, seen = 0.0, 0
    for start in track(starts, "training", len(starts)) if track else starts:
        idx = order[start:start + step]
        part = world.part(len(idx))
        rows = rows_of(idx, part)
        x = batches.get(idx, rng, part)  # already on the device when the batches augment there
        x = (x.pin_memory() if device.type == "cuda" and x.device.type == "cpu" else x).to(device, non_blocking=True)
        with precision.autocast():
            logits = model(channels_last(x))
        # This process's share of the global batch's mean loss, in fp32 whatever the forward ran in; the shares add up
        # to the one-process loss, and DDP averages gradients over processes, hence the factor world.size.
        share = loss_fn(logits.float(), y[rows].to(device, non_blocking=True), y[idx])
        precision.step(share * world.size, optimizer)
        if after_step:
            after_step()
        total, seen = total + share.item() * len(idx), seen + len(idx)
    return world.sum(total)[0] / max(seen, 1)


def validation_logits(model, val_in, precision: Precision, world: World) -> np.ndarray:
    """Logits of every validation row, in order: each process scores its share and all get the whole."""
    return world.sharded(lambda rows: (predict_logits(model, Rows(val_in, rows), precision=precision),), len(val_in))[0]


def trainable_inputs(cfg: TrainConfig, freeze: str, frozen, paths: list[str], training: bool, track=None, device=None):
    """Decoded images (augmented when training; on a GPU by tensor ops there), or the frozen prefix's cached
    outputs under `freeze`. When distilling, training images remember each one's view for the teacher's targets."""
    images = cached_images(paths, cfg.input_size, track)
    if freeze == "none":
        on_device = device if device is not None and device.type != "cpu" else None  # the numpy path is the faster one on a CPU
        if training and cfg.teacher:
            return ViewRecordingBatches(images, cfg.preprocessing, cfg.augment, on_device, views=geometric_views(cfg.augment))
        return ImageBatches(images, cfg.preprocessing, cfg.augment if training else "none", on_device)
    return frozen_features(frozen, images, cfg.preprocessing, flips=training and cfg.augment != "none", track=track)


def make_scheduler(cfg: TrainConfig, optimizer, epochs: int):
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.5, patience=3)


@dataclass
class Stage:
    """What one stage of training uses: with --warmup-epochs K, epochs 1..K train the head alone (on cached
    backbone features) at --lr, then the rest unfreeze down to --freeze at --finetune-lr; else one stage."""

    number: int
    freeze: str
    trainable: torch.nn.Module
    fitted: torch.nn.Module  # what the optimizer steps through: trainable, or DistributedDataParallel over it under torchrun
    train_in: object
    val_in: object
    optimizer: torch.optim.Optimizer
    scheduler: object


def stage_number(cfg: TrainConfig, epoch: int) -> int:
    return 2 if cfg.warmup_epochs and epoch > cfg.warmup_epochs else 1


def build_stage(number: int, cfg: TrainConfig, model, parts, train_paths: list[str], val_paths: list[str], track=None,
                world: World = World()) -> Stage:
    """`parts(freeze)` -> (frozen, trainable) of `model` (train() keeps one per --freeze value: an fx cut costs seconds).
    Under torchrun, rank 0 decodes the images and computes frozen features while the others wait for its cache."""
    warmup = number == 1 and cfg.warmup_epochs > 0
    freeze = "backbone" if warmup else cfg.freeze
    frozen, trainable = parts(freeze)
    for p in model.parameters():
        p.requires_grad_(True)
    for p in frozen.parameters():
        p.requires_grad_(False)
    lr = cfg.lr if warmup or not cfg.warmup_epochs else cfg.finetune_lr
    optimizer = torch.optim.AdamW([p for p in trainable.parameters() if p.requires_grad], lr=lr, weight_decay=cfg.weight_decay)
    epochs = cfg.warmup_epochs if warmup else cfg.epochs - cfg.warmup_epochs
    device = module_device(model)
    with world.main_first():
        inputs = [trainable_inputs(cfg, freeze, frozen, paths, training, track, device) for paths, training in ((train_paths, True), (val_paths, False))]
    return Stage(number, freeze, trainable, world.wrap(trainable, cfg.sync_bn), *inputs, optimizer, make_scheduler(cfg, optimizer, max(epochs, 1)))


def prepare_run(cfg: TrainConfig, resume: bool, overwrite: bool) -> Path:
    out = ensure_writable_dir(Path(cfg.out))
    existing = [f for f in RUN_FILES if (out / f).exists()]
    if existing and not resume and not overwrite:
        raise DermcliError(f"{out} already holds a run ({', '.join(existing)}): use --resume {out}, --overwrite, or another --out")
    return out


def run_split(cfg: TrainConfig, table: pd.DataFrame, out: Path, resume: bool, world: World) -> pd.DataFrame:
    """The run's split: made (or copied from --split-file) and saved by rank 0; read back by a resumed run and the other ranks."""
    if resume or not world.main:
        return load_split(out / "split.csv")
    split = load_split(Path(cfg.split_file)) if cfg.split_file else make_split(table, seed=cfg.split_seed)
    save_split(split, out / "split.csv")
    return split


def train(cfg: TrainConfig, resume: bool = False, overwrite: bool = False, resume_epochs: int | None = None, track=None,
          log=lambda msg: None, device: str = "auto") -> Path:
    """Train into cfg.out on `device`; returns the path of best.pt.

    With `resume`, continue from cfg.out/last.pt with its stored config (on any device); `resume_epochs`
    changes the total number of epochs (to extend a run, or to end it early and calibrate).
    """
    state = None
    if resume:
        state = read_checkpoint(Path(cfg.out) / "last.pt")
        cfg = TrainConfig.from_dict({**state["meta"]["config"], "out": cfg.out, **({"epochs": resume_epochs} if resume_epochs is not None else {})})
    cfg = cfg.resolved()
    where = torch.device(resolve_device(device))
    amp = resolve_amp(cfg.amp, where)  # cfg keeps what was asked, so a resume on another device resolves it there
    if cfg.sync_bn and where.type != "cuda":
        raise DermcliError("--sync-bn needs CUDA: PyTorch's SyncBatchNorm runs on GPUs only")
    world = join_job(where)
    if state is not None and state["training_state"].get("processes", 1) != world.size:
        raise DermcliError(f"{cfg.out} was trained by {state['training_state'].get('processes', 1)} processes, this job has {world.size}: "
                           "resume with the same number (torchrun --nproc-per-node), so the global batch stays the same")
    track, log = world.quiet(track, log)
    out = prepare_run(cfg, resume, overwrite) if world.main else Path(cfg.out)
    torch.manual_seed(cfg.seed)
    torch.use_deterministic_algorithms(cfg.deterministic)
    backend = get_backend(cfg.model)
    model = backend.build(num_outputs(cfg.task), cfg.model_options())
    if state is None:  # before anything is written: a model that cannot start leaves no half-made run behind
        backend.initialise(model, {**cfg.model_options(), "preprocessing": cfg.preprocessing}, log)  # --init layouts check it
        if cfg.teacher:
            check_teacher(Path(cfg.teacher), list(class_names(cfg.task)))
    else:
        model.load_state_dict(state["state_dict"])
    model.to(where, memory_format=torch.channels_last)
    # Cut once per --freeze value, after the move (a cut refers to the model's tensors); cutting here also fails
    # a --freeze point the model cannot be cut at before anything is written.
    parts = functools.cache(lambda freeze: backend.split_frozen(model, freeze))
    parts(cfg.freeze)

    table = load_dataset(Path(cfg.data))
    with world.main_first():
        split = run_split(cfg, table, out, resume, world)
    source = cfg.split_file if cfg.split_file and not resume else str(out / "split.csv")
    train_rows, val_rows = select(table, split, "train", source), select(table, split, "val", source)
    y_train = np.array(task_targets(train_rows["dx"], cfg.task))
    y_val = np.array(task_targets(val_rows["dx"], cfg.task))
    log(f"split (lesion-level, seed {cfg.split_seed}): " + ", ".join(f"{s} {n}" for s, n in split["split"].value_counts().items()))
    if not has_group_ids(table):
        log(GROUPLESS_WARNING.format(data=cfg.data))

    precision = Precision(amp, where)
    log(f"training on {where}" + (f" with {amp} autocast" if amp != "none" else "")
        + (f", {world.size} processes, global batch {world.size} x {cfg.batch_size}" if world.size > 1 else ""))
    if cfg.fp16_frozen and state is None:
        round_to_half(parts(cfg.freeze)[0])
    paths = (train_rows["path"].tolist(), val_rows["path"].tolist())
    start_epoch = state["training_state"]["epoch"] + 1 if state else 1
    stage = build_stage(stage_number(cfg, min(start_epoch, cfg.epochs)), cfg, model, parts, *paths, track, world)
    if world.main:
        record_digests(out / "split.csv", split, pd.concat([train_rows, val_rows]), cfg.input_size, track)
    rng = np.random.default_rng(cfg.seed)
    average = WeightAverage(model, lambda m: backend.split_frozen(m, cfg.freeze)[1], cfg.ema) if cfg.ema else None
    evaluated = average.model if average else model  # what validation scores and best.pt stores
    evaluated_trainable = average.trainable if average else stage.trainable
    stopping = {"best": -np.inf, "best_epoch": 0, "bad_epochs": 0}
    history: list[dict] = []
    if state is not None:
        ts = state["training_state"]
        if ts.get("stage", 1) == stage.number:  # a run stopped at the end of the warm-up starts its second stage afresh
            stage.optimizer.load_state_dict(ts["optimizer"])
            stage.scheduler.load_state_dict(ts["scheduler"])
        rng.bit_generator.state = ts["numpy_rng"]
        torch.set_rng_state(ts["torch_rng"])
        if where.type == "cuda" and "cuda_rng" in ts:
            torch.cuda.set_rng_state_all(ts["cuda_rng"])
        stopping, history = ts["stopping"], ts["history"]
        if average:
            average.model.load_state_dict(ts["ema"]["state_dict"])
            average.steps = ts["ema"]["steps"]

    meta = {
        "backend": cfg.model, "task": cfg.task, "class_names": list(class_names(cfg.task)), "input_size": cfg.input_size,
        "preprocessing": cfg.preprocessing, "model_options": cfg.model_options(), "threshold": 0.5, "temperature": 1.0,
        "config": asdict(cfg), "split_seed": cfg.split_seed, "amp": amp,
    }
    if world.main:
        write_text(out / "config.json", json.dumps(asdict(cfg), indent=2) + "\n")
    y_train_t = torch.from_numpy(y_train)
    loss_fn = loss_function(cfg, y_train, where)
    if cfg.teacher:  # the loss then takes row indices, and finds labels and teacher logits by them
        with world.main_first():
            teacher = teacher_logits(Path(cfg.teacher), paths[0], cfg.augment, list(class_names(cfg.task)), track, log)
        loss_fn = DistillationLoss(loss_fn, y_train_t, teacher, stage.train_in, cfg.distill_weight, cfg.distill_temperature)
        y_train_t = torch.arange(len(y_train))
    epoch, calibrating = start_epoch - 1, False
    try:
        for epoch in track(range(start_epoch, cfg.epochs + 1), "epochs", cfg.epochs - start_epoch + 1) if track else range(start_epoch, cfg.epochs + 1):
            if stopping["bad_epochs"] >= cfg.patience:
                break
            if stage_number(cfg, epoch) != stage.number:
                log(f"epoch {epoch}: warm-up over, training down to --freeze {cfg.freeze} at lr {cfg.finetune_lr:g}")
                stage = build_stage(stage_number(cfg, epoch), cfg, model, parts, *paths, track, world)
                evaluated_trainable = stage.trainable
            t0 = time.perf_counter()
            train_loss = train_one_epoch(stage.fitted, stage.train_in, y_train_t, loss_fn, stage.optimizer, rng, cfg.batch_size, track,
                                         after_step=average.update if average else None, precision=precision, world=world)
            val = validation_metrics(y_val, validation_logits(evaluated_trainable, stage.val_in, precision, world), cfg.task)
            selection = next(iter(val.values()))
            stage.scheduler.step(selection) if cfg.scheduler == "plateau" else stage.scheduler.step()
            history.append({"epoch": epoch, "train_loss": train_loss, **{f"val_{k}": v for k, v in val.items()},
                            "lr": stage.optimizer.param_groups[0]["lr"], "seconds": round(time.perf_counter() - t0, 2)})
            improved = selection > stopping["best"]
            stopping = {"best": selection if improved else stopping["best"], "best_epoch": epoch if improved else stopping["best_epoch"],
                        "bad_epochs": 0 if improved else stopping["bad_epochs"] + 1}
            if world.main:
                write_text(out / "history.csv", pd.DataFrame(history).to_csv(index=False))
                if improved:
                    save_checkpoint(out / "best.pt", evaluated, {**meta, "epoch": epoch, "val_metrics": val})
                training_state = {"stage": stage.number, "optimizer": stage.optimizer.state_dict(), "scheduler": stage.scheduler.state_dict(),
                                  "numpy_rng": rng.bit_generator.state, "processes": world.size,
                                  "torch_rng": torch.get_rng_state(), "stopping": stopping, "history": history, "epoch": epoch,
                                  **({"cuda_rng": torch.cuda.get_rng_state_all()} if where.type == "cuda" else {}),
                                  **({"ema": {"state_dict": average.model.state_dict(), "steps": average.steps}} if average else {})}
                save_checkpoint(out / "last.pt", model, {**meta, "epoch": epoch, "val_metrics": val}, training_state)
            log(f"epoch {epoch}: train loss {train_loss:.4f}, " + ", ".join(f"val {k} {v:.4f}" for k, v in val.items()) + (" *" if improved else ""))
        calibrating = True
        if not world.main:  # rank 0 calibrates on the whole validation split alone
            return out / "best.pt"
        frozen = parts(cfg.freeze)[0]
        val_in = stage.val_in if stage.freeze == cfg.freeze else trainable_inputs(cfg, cfg.freeze, frozen, paths[1], False,
                                                                                   track, where)  # stopped in the warm-up
        return calibrate(out / "best.pt", cfg, val_in, y_val, log, (trainable_inputs(cfg, cfg.freeze, frozen, paths[0], False, track, where), y_train))
    except KeyboardInterrupt:
        moment = "while calibrating" if calibrating else f"in epoch {epoch}"
        raise Interrupted(f"interrupted {moment}; last.pt holds the last finished epoch: resume with `dermcli train --resume {out}`") from None
    except NonFiniteLoss:
        kept = f"last.pt holds epoch {epoch - 1}, the last good one" if epoch > 1 else "no epoch had finished"
        raise DermcliError(f"the loss became NaN or infinite in epoch {epoch}: stopped; {kept} "
                           f"(try a lower --lr{', or --amp none' if amp != 'none' else ''})") from None
