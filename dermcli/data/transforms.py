"""Pixels -> network input, and train-time augmentation. NumPy only, so inference needs no torch."""

import numpy as np

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68], dtype=np.float32)


def normalize(images: np.ndarray, preprocessing: str) -> np.ndarray:
    """uint8 (N, H, W, 3) RGB -> float32 (N, 3, H, W) as the weights expect.

    unit: [0, 1]; imagenet: ImageNet mean/std on [0, 1] RGB; caffe: BGR minus the Caffe means, 0..255;
    inception: [-1, 1] (mean 0.5, std 0.5, as Inception, EfficientNet-V2-L and TF EfficientNets).
    """
    x = images.astype(np.float32)
    if preprocessing == "unit":
        x /= 255.0
    elif preprocessing == "imagenet":
        x = (x / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    elif preprocessing == "caffe":
        x = x[..., ::-1] - CAFFE_MEAN_BGR
    elif preprocessing == "inception":
        x = x / 127.5 - 1.0
    else:
        raise ValueError(f"unknown preprocessing {preprocessing!r}")
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


AUGMENTATIONS = ("dihedral", "flips", "none")


def draw_augmentation(n: int, rng: np.random.Generator, turns: bool = True, jitter: float = 0.1) -> dict[str, np.ndarray]:
    """Random flips (and 90-degree turns if `turns`) and colour-jitter factors for n images, drawn in one fixed
    order, so the numpy path here and the tensor path on a GPU (batches.augment_on_device) see the same draws."""
    params = {"hflip": rng.random(n) < 0.5, "vflip": rng.random(n) < 0.5,
              "turns": rng.integers(0, 4, n) if turns else np.zeros(n, dtype=int)}
    if jitter:
        params["brightness"], params["contrast"], params["saturation"] = rng.uniform(1 - jitter, 1 + jitter, (3, n)).astype(np.float32)
    return params


def apply_augmentation(images: np.ndarray, params: dict[str, np.ndarray]) -> np.ndarray:
    """uint8 (N, H, W, 3) -> uint8 (N, H, W, 3), H == W: each image turned, mirrored, then colour-jittered."""
    out = np.empty(images.shape, dtype=np.float32)
    for i, img in enumerate(images):
        img = np.rot90(img, params["turns"][i])
        img = img[:, ::-1] if params["hflip"][i] else img
        out[i] = img[::-1] if params["vflip"][i] else img
    if "brightness" in params:
        brightness, contrast, saturation = (params[k][:, None, None, None] for k in ("brightness", "contrast", "saturation"))
        out *= brightness
        mean = out.mean(axis=(1, 2, 3), keepdims=True)
        out = (out - mean) * contrast + mean
        gray = out.mean(axis=3, keepdims=True)
        out = (out - gray) * saturation + gray
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
