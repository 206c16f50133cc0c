"""A PyTorch model over batches: every output for every row, in order, on the model's device."""

from contextlib import nullcontext

import numpy as np
import torch

from dermcli.data.batches import channels_last
from dermcli.runtime.devices import module_device


@torch.inference_mode()
def predict_outputs(model: torch.nn.Module, batches, batch_size: int = 64, track=None, precision=None) -> list[np.ndarray]:
    """Every output of `model` (one tensor, or a tuple: logits and a score) for every row of `batches`, in
    order, on the model's device (fp32 out)."""
    model.eval()
    out, starts, device = [], range(0, len(batches), batch_size), module_device(model)
    for start in track(starts, "predicting", len(starts)) if track else starts:
        x = batches.get(np.arange(start, min(start + batch_size, len(batches)))).to(device, non_blocking=True)
        with precision.autocast() if precision else nullcontext():
            outputs = model(channels_last(x))
        out.append([o.float().cpu() for o in (outputs if isinstance(outputs, tuple) else (outputs,))])
    return [torch.cat(column).numpy() for column in zip(*out)]


def predict_logits(model: torch.nn.Module, batches, batch_size: int = 64, track=None, precision=None) -> np.ndarray:
    """Logits (N, outputs) for every row of `batches`, in order, on the model's device (fp32 out)."""
    return predict_outputs(model, batches, batch_size, track, precision)[0]
