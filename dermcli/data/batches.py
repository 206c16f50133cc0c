"""What the trainable part of a model eats, batch by batch: images, or cached frozen-part features."""


import numpy as np
import torch
import torch.nn.functional as F

from dermcli.data.transforms import CAFFE_MEAN_BGR, IMAGENET_MEAN, IMAGENET_STD, apply_augmentation, draw_augmentation, normalize


class ImageBatches:
    """uint8 (N, H, W, 3) images -> normalised float NCHW batches, augmented when training.

    With a `device` (a GPU), the uint8 batch goes there through pinned memory and is augmented and
    normalised by tensor ops on the device, from the same draws as the numpy path (transforms.draw_augmentation).
    """

    def __init__(self, images: np.ndarray, preprocessing: str, augment: str = "none", device: torch.device | None = None,
                 crop_scale: float = 1.0):
        self.images, self.preprocessing, self.augment, self.device = images, preprocessing, augment, device
        self.crop_scale = crop_scale

    def __len__(self) -> int:
        return len(self.images)

    def draw(self, n: int, rng: np.random.Generator | None, part: np.ndarray | None = None):
        """Augmentation params for the rows `part` (default: all) of a training batch of n, drawn for all n
        (None when evaluating or not augmenting)."""
        if rng is None or (self.augment == "none" and self.crop_scale >= 1):
            return None
        params = draw_augmentation(n, rng, turns=self.augment == "dihedral") if self.augment != "none" else {}
        if self.crop_scale < 1:  # drawn after the flips, so runs without crops draw what they always drew
            params.update(draw_crops(n, rng, self.crop_scale))
        return rows_of(params, part)

    def get(self, idx: np.ndarray, rng: np.random.Generator | None = None, part: np.ndarray | None = None) -> torch.Tensor:
        """The rows `idx` (for training, in a random order and augmented from `rng`). Under torchrun, `part` picks
        this process's rows of the global batch `idx`: the draws are made for the whole batch, so every
        process's `rng` stays in step and N processes see the pixels one process would."""
        params = self.draw(len(idx), rng, part) or {}
        x = self.images[rows_of(idx, part)]  # in idx's order, always: labels are paired with rows by position
        flips = params if "hflip" in params else None
        if self.device is None:
            x = torch.from_numpy(normalize(apply_augmentation(x, flips) if flips else x, self.preprocessing))
        else:
            x = torch.from_numpy(np.ascontiguousarray(x))
            x = (x.pin_memory() if self.device.type == "cuda" else x).to(self.device, non_blocking=True)
            x = normalize_on_device(augment_on_device(x, flips) if flips else x, self.preprocessing)
        return crop_and_resize(x, params) if "crop_area" in params else x


def draw_crops(n: int, rng: np.random.Generator, min_area: float) -> dict[str, np.ndarray]:
    """Random resized crops (as torchvision's RandomResizedCrop, scale (min_area, 1), ratio (3/4, 4/3)): each
    crop's share of the image's area, its aspect, and where its centre lies, as fractions of the free room."""
    return {"crop_area": rng.uniform(min_area, 1.0, n), "crop_aspect": np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3), n)),
            "crop_x": rng.uniform(-1, 1, n), "crop_y": rng.uniform(-1, 1, n)}


def crop_and_resize(x: torch.Tensor, params: dict) -> torch.Tensor:
    """Each normalised image (N, C, S, S) -> its drawn crop, bilinearly scaled back to S x S, by one batched
    grid_sample on x's device (the same op on a CPU and a GPU). Normalising is affine per channel, so cropping
    after it gives the pixels cropping before it would."""
    area, aspect = (torch.as_tensor(params[k], dtype=torch.float32) for k in ("crop_area", "crop_aspect"))
    width, height = (area * aspect).sqrt().clamp(max=1), (area / aspect).sqrt().clamp(max=1)
    theta = torch.zeros(len(x), 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = width, height
    theta[:, 0, 2] = torch.as_tensor(params["crop_x"], dtype=torch.float32) * (1 - width)
    theta[:, 1, 2] = torch.as_tensor(params["crop_y"], dtype=torch.float32) * (1 - height)
    grid = F.affine_grid(theta.to(x.device), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def augment_on_device(x: torch.Tensor, params: dict) -> torch.Tensor:
    """transforms.apply_augmentation as tensor ops on x's device: uint8 (N, S, S, 3) -> uint8. Same draws give
    the same pixels, up to float rounding at the final truncation (a test holds the two side by side)."""
    out = torch.empty(x.shape, dtype=torch.float32, device=x.device)
    for i in range(len(x)):
        img = torch.rot90(x[i], int(params["turns"][i]), dims=(0, 1))
        img = img.flip(1) if params["hflip"][i] else img
        out[i] = img.flip(0) if params["vflip"][i] else img
    if "brightness" in params:
        brightness, contrast, saturation = (torch.from_numpy(params[k]).to(x.device).view(-1, 1, 1, 1)
                                            for k in ("brightness", "contrast", "saturation"))
        out *= brightness
        mean = out.mean(dim=(1, 2, 3), keepdim=True)
        out = (out - mean) * contrast + mean
        gray = out.mean(dim=3, keepdim=True)
        out = (out - gray) * saturation + gray
    return (out + 0.5).clamp(0, 255).to(torch.uint8)


def normalize_on_device(x: torch.Tensor, preprocessing: str) -> torch.Tensor:
    """transforms.normalize as tensor ops: uint8 (N, H, W, 3) -> float32 (N, 3, H, W), channels-last in memory."""
    x = x.float()
    if preprocessing == "unit":
        x = x / 255.0
    elif preprocessing == "imagenet":
        x = (x / 255.0 - torch.from_numpy(IMAGENET_MEAN).to(x.device)) / torch.from_numpy(IMAGENET_STD).to(x.device)
    elif preprocessing == "caffe":
        x = x.flip(-1) - torch.from_numpy(CAFFE_MEAN_BGR).to(x.device)
    elif preprocessing == "inception":
        x = x / 127.5 - 1.0
    else:
        raise ValueError(f"unknown preprocessing {preprocessing!r}")
    return x.permute(0, 3, 1, 2)


class FeatureBatches:
    """Outputs of a frozen prefix, computed once per view (identity, and a flip when augmenting).

    Training draws one view per sample; evaluation always uses the identity view.
    """

    def __init__(self, views: list[torch.Tensor]):
        self.views = views

    def __len__(self) -> int:
        return len(self.views[0])

    def get(self, idx: np.ndarray, rng: np.random.Generator | None = None, part: np.ndarray | None = None) -> torch.Tensor:
        """As ImageBatches.get, rows in idx's order: the view of each row is drawn for the whole batch, then `part`
        kept; without `rng` (evaluating) or with one view, the identity view."""
        if rng is None or len(self.views) == 1:
            return self.views[0][rows_of(idx, part)].float()
        which = rows_of(rng.integers(0, len(self.views), len(idx)), part)
        return torch.stack([self.views[v][i] for v, i in zip(which, rows_of(idx, part))]).float()


def rows_of(values, part: np.ndarray | None):
    """`values` (an array, or a dict of arrays) at the rows `part`; all of it when `part` is None."""
    if part is None:
        return values
    return {k: v[part] for k, v in values.items()} if isinstance(values, dict) else values[part]


class Rows:
    """Some rows of batches (this process's share of an evaluation under torchrun), in their order."""

    def __init__(self, batches, rows: slice):
        self.batches, self.rows = batches, np.arange(len(batches))[rows]

    def __len__(self) -> int:
        return len(self.rows)

    def get(self, idx: np.ndarray, rng=None, part=None) -> torch.Tensor:
        return self.batches.get(self.rows[idx], rng, part)


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """NHWC layout for image-shaped batches: CPU convolutions run about 15% faster."""
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


