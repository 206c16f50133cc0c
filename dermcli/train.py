"""Training: split, build, fit with early stopping, then calibrate on validation. Resumable from last.pt."""

import copy
import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dermcli.batches import ImageBatches, channels_last, frozen_features, predict_logits
from dermcli.checkpoint import num_outputs, read_checkpoint, round_to_half, save_checkpoint
from dermcli.config import TrainConfig
from dermcli.data.dataset import load_dataset
from dermcli.data.cache import cached_images
from dermcli.data.split import load_split, make_split, save_split, select
from dermcli.errors import DermcliError
from dermcli.io import ensure_writable_dir, write_text
from dermcli.labels import MALIGNANT_INDICES, class_names, task_targets
from dermcli.metrics import (binary_summary, fit_temperature, malignant_score, multiclass_summary, probabilities,
                             threshold_for_sensitivity)
from dermcli.models import get_backend

RUN_FILES = ("best.pt", "last.pt", "history.csv", "split.csv", "config.json")


class Interrupted(DermcliError):
    exit_code = 130


def positive_score(probs: np.ndarray, task: str) -> np.ndarray:
    """Malignant probability (N,) from task probabilities (N, K)."""
    return probs[:, 1] if task == "binary" else malignant_score(probs, MALIGNANT_INDICES)


def malignant_targets(y: np.ndarray, task: str) -> np.ndarray:
    return y if task == "binary" else np.isin(y, MALIGNANT_INDICES).astype(int)


def validation_metrics(y: np.ndarray, logits: np.ndarray, task: str, temperature: float = 1.0) -> dict:
    """Selection metric first: PR-AUC for binary models, macro-F1 for multi-class ones."""
    probs = probabilities(logits, temperature)
    if task == "binary":
        m = binary_summary(y, probs[:, 1], 0.5)
        return {"pr_auc": m["pr_auc"], "roc_auc": m["roc_auc"], "loss": m["loss"], "accuracy": m["accuracy"]}
    m = multiclass_summary(y, probs)
    return {"macro_f1": m["macro_f1"], "accuracy": m["accuracy"], "macro_auc": m["macro_auc"], "loss": m["loss"]}


def loss_function(cfg: TrainConfig, y_train: np.ndarray):
    counts = np.bincount(y_train, minlength=2 if cfg.task == "binary" else 7).astype(np.float64)
    power = {"none": 0.0, "sqrt": 0.5, "balanced": 1.0}[cfg.class_weights]
    if cfg.task == "binary":
        # pos_weight = negatives / positives (about 4.1 on HAM10000), to the chosen power.
        pos_weight = torch.tensor([(counts[0] / max(counts[1], 1)) ** power], dtype=torch.float32)
        bce = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
        smooth = cfg.label_smoothing
        return lambda logits, y: bce(logits.squeeze(1), y.float() * (1 - smooth) + 0.5 * smooth)
    weights = (counts.sum() / (len(counts) * np.maximum(counts, 1))) ** power
    return torch.nn.CrossEntropyLoss(weight=torch.tensor(weights, dtype=torch.float32), label_smoothing=cfg.label_smoothing)


class WeightAverage:
    """Exponential moving average of a model's weights and BatchNorm statistics. The average of the
    last few hundred steps usually generalises better than the last step; validation and best.pt use it.

    Only the part that trains is averaged (frozen layers never change), through tensor pairs made once.
    """

    def __init__(self, model: torch.nn.Module, trainable_part, decay: float):
        self.model, self.decay, self.steps = copy.deepcopy(model), decay, 0
        self.trainable = trainable_part(self.model)
        self._pairs = list(zip(self.trainable.state_dict().values(), trainable_part(model).state_dict().values()))

    @torch.no_grad()
    def update(self) -> None:
        self.steps += 1
        decay = min(self.decay, (1 + self.steps) / (10 + self.steps))  # early on, forget the random start quickly
        for average, current in self._pairs:
            average.lerp_(current, 1 - decay) if average.is_floating_point() else average.copy_(current)


def train_one_epoch(model, batches, y: torch.Tensor, loss_fn, optimizer, rng, batch_size: int, track=None, after_step=None) -> float:
    """One pass over `batches` in random order; `after_step()` runs after every optimizer step."""
    model.train()
    order = rng.permutation(len(batches))
    starts = range(0, len(order) - 1, batch_size)  # a last batch of one would break BatchNorm
    total, seen = 0.0, 0
    for start in track(starts, "training", len(starts)) if track else starts:
        idx = order[start:start + batch_size]
        loss = loss_fn(model(channels_last(batches.get(idx, rng))), y[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if after_step:
            after_step()
        total, seen = total + loss.item() * len(idx), seen + len(idx)
    return total / max(seen, 1)


def trainable_inputs(cfg: TrainConfig, frozen, paths: list[str], size: int, training: bool, track=None):
    """Decoded images (augmented when training), or the frozen prefix's cached outputs under --freeze."""
    images = cached_images(paths, size, track)
    if cfg.freeze == "none":
        return ImageBatches(images, cfg.preprocessing, cfg.augment if training else "none")
    return frozen_features(frozen, images, cfg.preprocessing, flips=training and cfg.augment != "none", track=track)


def make_scheduler(cfg: TrainConfig, optimizer):
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
    return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.5, patience=3)


def prepare_run(cfg: TrainConfig, resume: bool, overwrite: bool) -> Path:
    out = ensure_writable_dir(Path(cfg.out))
    existing = [f for f in RUN_FILES if (out / f).exists()]
    if existing and not resume and not overwrite:
        raise DermcliError(f"{out} already holds a run ({', '.join(existing)}): use --resume {out}, --overwrite, or another --out")
    return out


def run_split(cfg: TrainConfig, table: pd.DataFrame, out: Path, resume: bool) -> pd.DataFrame:
    if resume:
        return load_split(out / "split.csv")
    split = load_split(Path(cfg.split_file)) if cfg.split_file else make_split(table, seed=cfg.split_seed)
    save_split(split, out / "split.csv")
    return split


def train(cfg: TrainConfig, resume: bool = False, overwrite: bool = False, resume_epochs: int | None = None, track=None,
          log=lambda msg: None) -> Path:
    """Train into cfg.out; returns the path of best.pt.

    With `resume`, continue from cfg.out/last.pt with its stored config; `resume_epochs` changes the
    total number of epochs (to extend a run, or to end it early and calibrate).
    """
    state = None
    if resume:
        state = read_checkpoint(Path(cfg.out) / "last.pt")
        cfg = TrainConfig.from_dict({**state["meta"]["config"], "out": cfg.out, **({"epochs": resume_epochs} if resume_epochs is not None else {})})
    cfg = cfg.resolved()
    out = prepare_run(cfg, resume, overwrite)
    torch.manual_seed(cfg.seed)
    torch.use_deterministic_algorithms(cfg.deterministic)
    backend = get_backend(cfg.model)
    model = backend.build(num_outputs(cfg.task), cfg.model_options())
    if state is None:  # before anything is written: a model that cannot start leaves no half-made run behind
        backend.initialise(model, cfg.model_options(), log)
    else:
        model.load_state_dict(state["state_dict"])

    table = load_dataset(Path(cfg.data))
    split = run_split(cfg, table, out, resume)
    train_rows, val_rows = select(table, split, "train"), select(table, split, "val")
    y_train = np.array(task_targets(train_rows["dx"], cfg.task))
    y_val = np.array(task_targets(val_rows["dx"], cfg.task))
    log(f"split (lesion-level, seed {cfg.split_seed}): " + ", ".join(f"{s} {n}" for s, n in split["split"].value_counts().items()))

    model.to(memory_format=torch.channels_last)
    frozen, trainable = backend.split_frozen(model, cfg.freeze)
    for p in frozen.parameters():
        p.requires_grad_(False)
    if cfg.fp16_frozen and state is None:
        round_to_half(frozen)

    train_in = trainable_inputs(cfg, frozen, train_rows["path"].tolist(), cfg.input_size, training=True, track=track)
    val_in = trainable_inputs(cfg, frozen, val_rows["path"].tolist(), cfg.input_size, training=False, track=track)
    optimizer = torch.optim.AdamW([p for p in trainable.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = make_scheduler(cfg, optimizer)
    rng = np.random.default_rng(cfg.seed)
    average = WeightAverage(model, lambda m: backend.split_frozen(m, cfg.freeze)[1], cfg.ema) if cfg.ema else None
    evaluated = average.model if average else model  # what validation scores and best.pt stores
    evaluated_trainable = average.trainable if average else trainable
    stopping = {"best": -np.inf, "best_epoch": 0, "bad_epochs": 0}
    history: list[dict] = []
    start_epoch = 1
    if state is not None:
        ts = state["training_state"]
        optimizer.load_state_dict(ts["optimizer"])
        scheduler.load_state_dict(ts["scheduler"])
        rng.bit_generator.state = ts["numpy_rng"]
        torch.set_rng_state(ts["torch_rng"])
        stopping, history, start_epoch = ts["stopping"], ts["history"], ts["epoch"] + 1
        if average:
            average.model.load_state_dict(ts["ema"]["state_dict"])
            average.steps = ts["ema"]["steps"]

    meta = {
        "backend": cfg.model, "task": cfg.task, "class_names": list(class_names(cfg.task)), "input_size": cfg.input_size,
        "preprocessing": cfg.preprocessing, "model_options": cfg.model_options(), "threshold": 0.5, "temperature": 1.0,
        "config": asdict(cfg), "split_seed": cfg.split_seed,
    }
    write_text(out / "config.json", json.dumps(asdict(cfg), indent=2) + "\n")
    y_train_t = torch.from_numpy(y_train)
    loss_fn = loss_function(cfg, y_train)
    epoch, calibrating = start_epoch - 1, False
    try:
        for epoch in track(range(start_epoch, cfg.epochs + 1), "epochs", cfg.epochs - start_epoch + 1) if track else range(start_epoch, cfg.epochs + 1):
            if stopping["bad_epochs"] >= cfg.patience:
                break
            t0 = time.perf_counter()
            train_loss = train_one_epoch(trainable, train_in, y_train_t, loss_fn, optimizer, rng, cfg.batch_size, track,
                                         after_step=average.update if average else None)
            val = validation_metrics(y_val, predict_logits(evaluated_trainable, val_in), cfg.task)
            selection = next(iter(val.values()))
            scheduler.step(selection) if cfg.scheduler == "plateau" else scheduler.step()
            history.append({"epoch": epoch, "train_loss": train_loss, **{f"val_{k}": v for k, v in val.items()},
                            "lr": optimizer.param_groups[0]["lr"], "seconds": round(time.perf_counter() - t0, 2)})
            write_text(out / "history.csv", pd.DataFrame(history).to_csv(index=False))
            improved = selection > stopping["best"]
            stopping = {"best": selection if improved else stopping["best"], "best_epoch": epoch if improved else stopping["best_epoch"],
                        "bad_epochs": 0 if improved else stopping["bad_epochs"] + 1}
            if improved:
                save_checkpoint(out / "best.pt", evaluated, {**meta, "epoch": epoch, "val_metrics": val})
            training_state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "numpy_rng": rng.bit_generator.state,
                              "torch_rng": torch.get_rng_state(), "stopping": stopping, "history": history, "epoch": epoch,
                              **({"ema": {"state_dict": average.model.state_dict(), "steps": average.steps}} if average else {})}
            save_checkpoint(out / "last.pt", model, {**meta, "epoch": epoch, "val_metrics": val}, training_state)
            log(f"epoch {epoch}: train loss {train_loss:.4f}, " + ", ".join(f"val {k} {v:.4f}" for k, v in val.items()) + (" *" if improved else ""))
        calibrating = True
        return calibrate(out / "best.pt", cfg, val_in, y_val, log)
    except KeyboardInterrupt:
        where = "while calibrating" if calibrating else f"in epoch {epoch}"
        raise Interrupted(f"interrupted {where}; last.pt holds the last finished epoch: resume with `dermcli train --resume {out}`") from None


def calibrate(best_path: Path, cfg: TrainConfig, val_in, y_val: np.ndarray, log) -> Path:
    """Fit temperature scaling and the decision threshold on validation only; store both in best.pt."""
    best = read_checkpoint(best_path)
    model = get_backend(cfg.model).build(num_outputs(cfg.task), cfg.model_options())
    model.load_state_dict(best["state_dict"])
    _, trainable = get_backend(cfg.model).split_frozen(model, cfg.freeze)
    logits = predict_logits(trainable, val_in)
    temperature = fit_temperature(logits, y_val)
    probs = probabilities(logits, temperature)
    threshold = threshold_for_sensitivity(malignant_targets(y_val, cfg.task), positive_score(probs, cfg.task), cfg.target_sensitivity)
    meta = {**best["meta"], "temperature": temperature, "threshold": threshold,
            "val_metrics": validation_metrics(y_val, logits, cfg.task, temperature)}
    save_checkpoint(best_path, model, meta)
    log(f"best epoch {meta['epoch']}: temperature {temperature:.3f}, threshold {threshold:.4f} for sensitivity {cfg.target_sensitivity:.2f} on val")
    return best_path
