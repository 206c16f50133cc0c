"""Stages of a run: with --warmup-epochs, the head alone on cached features, then down to --freeze."""

from dataclasses import dataclass

import torch

from dermcli.runtime.devices import module_device
from dermcli.runtime.distributed import World
from dermcli.training.config import TrainConfig
from dermcli.training.features import trainable_inputs
from dermcli.training.loop import make_scheduler


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
    """`parts(freeze)` -> (frozen, trainable) of `model` (job.build_model keeps one per --freeze value: an fx cut costs seconds).
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
