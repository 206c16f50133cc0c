"""`train --ema`: an exponential moving average of the weights, validated and kept instead of the last step's."""

import copy

import torch


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
