"""An ensemble of checkpoints as one model: the mean of its members' calibrated probabilities.

Its output is a logit again (log of the mean probability for several classes, its logit for one), so every
part of dermcli (temperature, threshold, ONNX export, eval, predict) treats it as any other model. Built by
`dermcli ensemble`; the members' metadata travel in model_options, their weights in the state dict.
"""

from dataclasses import dataclass

import torch
from torch import nn

from dermcli.models import descriptions
from dermcli.models.backend import Backend, register
from dermcli.models.loading import build_model


class Ensemble(nn.Module):
    def __init__(self, members: list[nn.Module], temperatures: list[float]):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.register_buffer("temperatures", torch.tensor(temperatures, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.stack([m(x) for m in self.members]) / self.temperatures.view(-1, 1, 1)
        if logits.shape[-1] == 1:  # one sigmoid output
            p = torch.sigmoid(logits).mean(dim=0).clamp(1e-7, 1 - 1e-7)
            return torch.log(p) - torch.log1p(-p)
        return torch.log(torch.softmax(logits, dim=-1).mean(dim=0).clamp_min(1e-12))


@dataclass(frozen=True)
class EnsembleBackend(Backend):
    trainable: bool = False

    def build(self, num_outputs: int, options: dict):
        members = options["members"]
        return Ensemble([build_model(m) for m in members], [m["temperature"] for m in members])

    def split_frozen(self, model, freeze: str):
        return nn.Identity(), model


register(EnsembleBackend(name="ensemble", default_task="multiclass", input_size=0, default_preprocessing="",
                         description=descriptions.ENSEMBLE))
