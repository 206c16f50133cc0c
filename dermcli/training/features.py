"""What the trainable part of a model eats: decoded images, or the frozen prefix's outputs computed once and cached."""

import hashlib

import numpy as np
import torch

from dermcli.core.errors import DermcliError
from dermcli.core.files import atomic_path
from dermcli.data.batches import FeatureBatches, ImageBatches, channels_last
from dermcli.data.cache import cache_dir, cached_images
from dermcli.data.transforms import normalize
from dermcli.runtime.devices import module_device
from dermcli.training.config import TrainConfig
from dermcli.training.distill import ViewRecordingBatches, geometric_views


def features_key(frozen: torch.nn.Module, images: np.ndarray, preprocessing: str) -> str:
    """Hash of everything the frozen outputs depend on: its weights, the pixels and the preprocessing."""
    digest = hashlib.sha256(preprocessing.encode())
    for name, tensor in frozen.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    for start in range(0, len(images), 512):
        digest.update(np.ascontiguousarray(images[start:start + 512]).tobytes())
    digest.update(repr([type(m).__name__ + repr(getattr(m, "stride", "")) for m in frozen.modules()]).encode())
    return digest.hexdigest()[:24]


@torch.no_grad()  # not inference_mode: these tensors feed autograd later
def _compute_view(frozen, images, preprocessing, flipped: bool, batch_size: int, track) -> np.ndarray:
    chunks, starts, device = [], range(0, len(images), batch_size), module_device(frozen)
    label = f"frozen features{' (flipped)' if flipped else ''}"
    for start in track(starts, label, len(starts)) if track else starts:
        x = images[start:start + batch_size]
        x = torch.from_numpy(normalize(x[:, :, ::-1] if flipped else x, preprocessing)).to(device, non_blocking=True)
        chunks.append(frozen(channels_last(x)).half().cpu())
    return torch.cat(chunks).numpy()


def frozen_features(frozen: torch.nn.Module, images: np.ndarray, preprocessing: str, flips: bool,
                    batch_size: int = 64, track=None) -> FeatureBatches:
    """Run the frozen prefix once per image (and its mirror image when `flips`), stored in fp16.

    Results are cached on disk under a hash of the frozen weights, pixels and preprocessing, so a
    resumed or repeated run skips the work; a change to any of them computes afresh.
    """
    frozen.eval()
    key = features_key(frozen, images, preprocessing)
    views = []
    for flipped in (False, True) if flips else (False,):
        path = cache_dir() / f"features_{key}_{'flip' if flipped else 'plain'}.npy"
        try:
            views.append(torch.from_numpy(np.load(path, mmap_mode="c")))
            continue
        except (OSError, ValueError):
            pass
        array = _compute_view(frozen, images, preprocessing, flipped, batch_size, track)
        try:
            with atomic_path(path) as tmp, open(tmp, "wb") as f:
                np.save(f, array)
        except (DermcliError, OSError):
            pass  # a cache we cannot write only costs time
        views.append(torch.from_numpy(array))
    return FeatureBatches(views)


def trainable_inputs(cfg: TrainConfig, freeze: str, frozen, paths: list[str], training: bool, track=None, device=None):
    """Decoded images (augmented when training; on a GPU by tensor ops there), or the frozen prefix's cached
    outputs under `freeze`. When distilling, training images remember each one's view for the teacher's targets."""
    images = cached_images(paths, cfg.input_size, track)
    if freeze == "none":
        on_device = device if device is not None and device.type != "cpu" else None  # the numpy path is the faster one on a CPU
        if training and cfg.teacher:
            return ViewRecordingBatches(images, cfg.preprocessing, cfg.augment, on_device, views=geometric_views(cfg.augment))
        return ImageBatches(images, cfg.preprocessing, cfg.augment if training else "none", on_device,
                            crop_scale=cfg.crop_scale if training else 1.0)
    return frozen_features(frozen, images, cfg.preprocessing, flips=training and cfg.augment != "none", track=track)
