"""One epoch of training and the validation logits, on any device, precision and number of processes."""

import numpy as np
import torch

from dermcli.data.batches import Rows, channels_last, rows_of
from dermcli.inference.forward import predict_logits
from dermcli.runtime.devices import Precision, module_device
from dermcli.runtime.distributed import World
from dermcli.training.config import TrainConfig


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


def make_scheduler(cfg: TrainConfig, optimizer, epochs: int):
    if cfg.scheduler == "cosine":
        cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs - cfg.lr_warmup, 1))
        if not cfg.lr_warmup:
            return cosine
        # epoch k of the warm-up (1-based) runs at lr * k / (warm-up + 1), then the cosine starts from lr
        warmup = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1 / (cfg.lr_warmup + 1), total_iters=cfg.lr_warmup)
        return torch.optim.lr_scheduler.SequentialLR(optimizer, [warmup, cosine], milestones=[cfg.lr_warmup])
    return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.5, patience=3)


def load_scheduler_state(scheduler, state: dict) -> None:
    """A resumed run's scheduler state, its cosine kept at this run's total of epochs: a resume that changes
    --epochs anneals to the new end (the stored T_max would make the rate climb again past the old one)."""
    cosines = [s for s in getattr(scheduler, "_schedulers", [scheduler]) if isinstance(s, torch.optim.lr_scheduler.CosineAnnealingLR)]
    totals = [c.T_max for c in cosines]
    scheduler.load_state_dict(state)
    for cosine, total in zip(cosines, totals):
        cosine.T_max = total
