"""Checkpoints to models: the architecture from its metadata, the weights, and the unusual-image score inside."""

from pathlib import Path

import torch
from torch import nn

from dermcli.core.errors import DermcliError
from dermcli.models.checkpoint import num_outputs, read_checkpoint
from dermcli.models.registry import get_backend
from dermcli.models.unusual import FeatureDistance, ScoredModel


def build_model(meta: dict, state_dict: dict | None = None, source: str = "checkpoint") -> torch.nn.Module:
    backend = get_backend(meta["backend"])
    model = backend.build(num_outputs(meta["task"], meta["class_names"]), meta.get("model_options", {}))
    if state_dict is not None:
        try:
            model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state_dict.items()})
        except RuntimeError:
            raise DermcliError(f"{source}: weights do not fit the {meta['backend']} architecture the file names") from None
    return model


def load_model(path: Path, expect_backend: str | None = None) -> tuple[torch.nn.Module, dict]:
    """Model in eval mode and its metadata; `expect_backend` refuses a checkpoint of another backend."""
    data = read_checkpoint(path)
    meta = data["meta"]
    if expect_backend and meta["backend"] != expect_backend:
        raise DermcliError(f"{path}: a {meta['backend']} checkpoint, not {expect_backend}")
    model = build_model(meta, data["state_dict"], str(path))
    return model.eval(), meta


def inference_model(path: Path) -> tuple[nn.Module, dict]:
    """A checkpoint's model in eval mode, scored (logits, distance) when the checkpoint has statistics."""
    data = read_checkpoint(path)
    model = build_model(data["meta"], data["state_dict"], str(path))
    if "ood" in data:
        model = ScoredModel(model, FeatureDistance(data["ood"]["means"], data["ood"]["whitening"]))
    return model.eval(), data["meta"]
