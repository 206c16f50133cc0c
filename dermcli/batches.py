"""What the trainable part of a model eats, batch by batch: images, or cached frozen-part features."""

import numpy as np
import torch

from dermcli.preprocess import augment, normalize


class ImageBatches:
    """uint8 (N, H, W, 3) images -> normalised float NCHW batches, augmented when training."""

    def __init__(self, images: np.ndarray, preprocessing: str, augment: bool = False):
        self.images, self.preprocessing, self.augment = images, preprocessing, augment

    def __len__(self) -> int:
        return len(self.images)

    def get(self, idx: np.ndarray, rng: np.random.Generator | None = None) -> torch.Tensor:
        x = self.images[np.sort(idx)] if rng is None else self.images[idx]
        if rng is not None and self.augment:
            x = augment(x, rng)
        return torch.from_numpy(normalize(x, self.preprocessing))


class FeatureBatches:
    """Outputs of a frozen prefix, computed once per view (identity, and a flip when augmenting).

    Training draws one view per sample; evaluation always uses the identity view.
    """

    def __init__(self, views: list[torch.Tensor]):
        self.views = views

    def __len__(self) -> int:
        return len(self.views[0])

    def get(self, idx: np.ndarray, rng: np.random.Generator | None = None) -> torch.Tensor:
        if rng is None or len(self.views) == 1:
            return self.views[0][np.sort(idx)].float()
        which = rng.integers(0, len(self.views), len(idx))
        return torch.stack([self.views[v][i] for v, i in zip(which, idx)]).float()


@torch.no_grad()  # not inference_mode: these tensors feed autograd later
def frozen_features(frozen: torch.nn.Module, images: np.ndarray, preprocessing: str, flips: bool,
                    batch_size: int = 64, track=None) -> FeatureBatches:
    """Run the frozen prefix once per image (and its mirror image when `flips`), stored in fp16."""
    frozen.eval()
    views = []
    for flipped in (False, True) if flips else (False,):
        chunks, starts = [], range(0, len(images), batch_size)
        label = f"frozen features{' (flipped)' if flipped else ''}"
        for start in track(starts, label, len(starts)) if track else starts:
            x = images[start:start + batch_size]
            x = x[:, :, ::-1] if flipped else x
            chunks.append(frozen(torch.from_numpy(normalize(x, preprocessing)).contiguous(memory_format=torch.channels_last)).half())
        views.append(torch.cat(chunks))
    return FeatureBatches(views)


@torch.inference_mode()
def predict_logits(model: torch.nn.Module, batches, batch_size: int = 64, track=None) -> np.ndarray:
    """Logits (N, outputs) for every row of `batches`, in order."""
    model.eval()
    out, starts = [], range(0, len(batches), batch_size)
    for start in track(starts, "predicting", len(starts)) if track else starts:
        out.append(model(batches.get(np.arange(start, min(start + batch_size, len(batches))))).float())
    return torch.cat(out).numpy()
