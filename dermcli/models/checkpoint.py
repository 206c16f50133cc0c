"""One checkpoint file = weights + everything needed to use them alone. Loaded with weights_only=True."""

import warnings
from pathlib import Path

import torch

from dermcli import __version__
from dermcli.core.errors import DermcliError
from dermcli.core.files import atomic_path
from dermcli.core.labels import CLASSES

FORMAT = "dermcli-checkpoint"
FORMAT_VERSION = 1


def torch_load(path: Path):
    """torch.load that only ever unpickles tensors and plain data, with one-line errors."""
    path = Path(path)
    if path.is_dir():
        raise DermcliError(f"{path}: is a folder; give the weights file inside it (e.g. {path / 'best.pt'})")
    if not path.is_file():
        raise DermcliError(f"{path}: no such weights file")
    try:
        with warnings.catch_warnings():  # torch warns about odd pickle protocols before refusing them itself
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for bad files; all mean "not loadable"
        text = str(e)
        if "Weights only load failed" in text and ("GLOBAL" in text or "global" in text):
            raise DermcliError(f"{path}: refused: the file holds Python objects that could run code, not just weights") from None
        raise DermcliError(f"{path}: not a readable PyTorch weights file (truncated or corrupt?)") from None


def num_outputs(task: str, classes=CLASSES) -> int:
    """A model's outputs: one logit per class, or the one of a binary model."""
    return len(classes) if task == "multiclass" else 1


def _storable_in_half(key: str, tensor: torch.Tensor) -> bool:
    # BatchNorm statistics stay fp32: under caffe preprocessing (0-255 inputs) the stem's running
    # variance exceeds fp16's 65504 and would load back as inf. They are a tiny share of the weights.
    return tensor.is_floating_point() and not key.endswith(("running_mean", "running_var"))


@torch.no_grad()
def round_to_half(module: torch.nn.Module) -> None:
    """Round in place what `save_checkpoint(half=True)` stores in fp16, so storing it later loses nothing."""
    for key, tensor in module.state_dict().items():
        if _storable_in_half(key, tensor):
            tensor.copy_(tensor.half())


def save_checkpoint(path: Path, model: torch.nn.Module, meta: dict, training_state: dict | None = None, half: bool = False,
                    ood: dict | None = None) -> None:
    """Write atomically; `half` stores weights in fp16 (loaded back as fp32), BatchNorm statistics in fp32;
    `ood` holds the out-of-distribution statistics (models.unusual), kept in fp32."""
    state = {k: (v.half() if half and _storable_in_half(k, v) else v).detach().cpu().clone() for k, v in model.state_dict().items()}
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "meta": {**meta, "dermcli_version": __version__}, "state_dict": state}
    if training_state is not None:
        payload["training_state"] = training_state
    if ood is not None:
        payload["ood"] = ood
    write_payload(path, payload)


def write_payload(path: Path, payload: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def read_checkpoint(path: Path) -> dict:
    data = torch_load(path)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        if isinstance(data, dict) and data and all(isinstance(v, torch.Tensor) for v in data.values()):
            raise DermcliError(f"{path}: a plain state dict, not a dermcli checkpoint (use it with `train --init {path}`)")
        raise DermcliError(f"{path}: not a dermcli checkpoint")
    if data.get("format_version", 0) > FORMAT_VERSION:
        raise DermcliError(f"{path}: written by a newer dermcli (format {data['format_version']}); upgrade dermcli")
    return data


