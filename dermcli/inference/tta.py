"""Test-time augmentation: the views of each image, and calibrated probabilities averaged over them."""

import numpy as np

from dermcli.core.errors import DermcliError
from dermcli.models.outputs import probabilities

TTA = ("none", "flips", "dihedral")  # test-time augmentation: 1, 4 or 8 views averaged


def check_tta(tta: str | None) -> None:
    if tta is not None and tta not in TTA:
        raise DermcliError(f"--tta {tta!r} is not one of {', '.join(TTA)}")


def tta_views(images: np.ndarray, tta: str) -> list[np.ndarray]:
    """The views of uint8 (N, S, S, 3) images that --tta averages: itself; with flips, also mirrored left-right,
    up-down and both; with dihedral, all 8 symmetries of the square (4 turns, each also mirrored)."""
    check_tta(tta)
    if tta == "none":
        return [images]
    if tta == "flips":
        return [images, images[:, :, ::-1], images[:, ::-1], images[:, ::-1, ::-1]]
    turns = [np.rot90(images, k, axes=(1, 2)) for k in range(4)]
    return turns + [t[:, :, ::-1] for t in turns]


def view_outputs(runner, images: np.ndarray, tta: str = "none", batch_size: int = 32, track=None) -> tuple[np.ndarray, np.ndarray | None]:
    """(views, N, K) logits of every --tta view of every image, and the out-of-distribution distances of the
    images as they are (None without fitted statistics). A few images go through at a time with all their views
    in one call of about `batch_size` images: one progress bar over images x views, one ETA, and the views of
    one chunk in memory, not of the whole set."""

    count = len(tta_views(images[:1], tta))
    step = max(1, batch_size // count)
    starts = range(0, len(images), step)
    logits, scores = [], []
    for s in (track(starts, f"predicting ({count} views)" if count > 1 else "predicting", len(starts)) if track else starts):
        chunk = images[s:s + step]
        out, score = runner.outputs(np.concatenate([np.ascontiguousarray(v) for v in tta_views(chunk, tta)]), len(chunk) * count)
        logits.append(out.reshape(count, len(chunk), -1))
        scores.append(None if score is None else score[:len(chunk)])  # the plain view comes first
    if not logits:
        return np.zeros((count, 0, 1), dtype=np.float32), None
    return np.concatenate(logits, axis=1), (None if scores[0] is None else np.concatenate(scores))


def predict_scored(runner, images: np.ndarray, tta: str = "none", batch_size: int = 32, track=None) -> tuple[np.ndarray, np.ndarray | None]:
    """Calibrated class probabilities (the checkpoint's temperature) averaged over the --tta views, and the
    out-of-distribution distances of the images as they are (None without fitted statistics)."""

    views, scores = view_outputs(runner, images, tta, batch_size, track)
    return np.mean([probabilities(v, runner.meta["temperature"]) for v in views], axis=0), scores


def predict_probabilities(runner, images: np.ndarray, tta: str = "none", batch_size: int = 32, track=None) -> np.ndarray:
    """Calibrated class probabilities (the checkpoint's temperature), averaged over the --tta views."""
    return predict_scored(runner, images, tta, batch_size, track)[0]
