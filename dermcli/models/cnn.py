"""The 7-class card's CNN on 28x28 RGB: four conv blocks, then five fully connected layers."""

from dataclasses import dataclass

from torch import nn

from dermcli.models import descriptions
from dermcli.models.backend import Backend, register


def _conv(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(inplace=True)]


def build_cnn(num_outputs: int = 7) -> nn.Sequential:
    features = nn.Sequential(
        *_conv(3, 32), nn.MaxPool2d(2), nn.BatchNorm2d(32),  # 28 -> 14
        *_conv(32, 64), *_conv(64, 64), nn.MaxPool2d(2), nn.BatchNorm2d(64),  # 14 -> 7
        *_conv(64, 128), *_conv(128, 128), nn.MaxPool2d(2), nn.BatchNorm2d(128),  # 7 -> 3
        *_conv(128, 256), *_conv(256, 256), nn.MaxPool2d(2),  # 3 -> 1
    )
    widths = (256, 256, 128, 64, 32)
    dense = []
    for w_in, w_out in zip(widths, widths[1:]):
        dense += [nn.Linear(w_in, w_out), nn.ReLU(inplace=True), nn.BatchNorm1d(w_out)]
    return nn.Sequential(features, nn.Flatten(), nn.Dropout(0.2), *dense, nn.Linear(32, num_outputs))


@dataclass(frozen=True)
class CNNBackend(Backend):
    def build(self, num_outputs: int, options: dict):
        return build_cnn(num_outputs)

    def split_frozen(self, model, freeze: str):
        return nn.Identity(), model


register(CNNBackend(
    name="cnn", default_task="multiclass", input_size=28, default_preprocessing="unit",
    description=descriptions.CNN,
))
