"""Knowledge distillation (`train --teacher PATH`): the student learns from the labels and from a trained
teacher's softened probabilities on the same view of each image (Hinton et al., 2015).

The teacher sees each training image at its own input size, turned and mirrored exactly as the student's
augmentation drew it. Those geometric views are few (8 for dihedral, 4 for flips), so the teacher's logits
for all of them are computed once and cached; the colour jitter is not replayed for the teacher (it would
mean a teacher forward pass per step), so its targets are those of the un-jittered view.
"""

import hashlib
from pathlib import Path

import numpy as np
import torch

from dermcli.batches import ImageBatches
from dermcli.data.cache import cache_dir, cached_images
from dermcli.errors import DermcliError
from dermcli.io import atomic_path
from dermcli.preprocess import apply_augmentation


def geometric_views(augment: str) -> list[dict]:
    """One (turns, hflip, vflip) setting per distinct view the augmentation can draw."""
    settings = [(t, h, v) for t in range(4 if augment == "dihedral" else 1) for h in (0, 1) for v in (0, 1)] if augment != "none" else [(0, 0, 0)]
    probe = np.arange(9, dtype=np.uint8).reshape(1, 3, 3, 1).repeat(3, axis=3)  # every symmetry moves these pixels differently
    distinct = {}
    for t, h, v in settings:
        key = _geometry(probe, np.array([t]), np.array([h]), np.array([v])).tobytes()
        distinct.setdefault(key, (t, h, v))
    return [{"turns": t, "hflip": h, "vflip": v} for t, h, v in distinct.values()]


def _geometry(images: np.ndarray, turns, hflip, vflip) -> np.ndarray:
    return apply_augmentation(images, {"turns": turns, "hflip": hflip.astype(bool), "vflip": vflip.astype(bool)})


def view_index(params: dict, views: list[dict]) -> np.ndarray:
    """For drawn augmentation params, the index in `views` of each image's geometric view."""
    probe = np.arange(9, dtype=np.uint8).reshape(1, 3, 3, 1).repeat(3, axis=3)
    keys = {_geometry(probe, *(np.array([v[k]]) for k in ("turns", "hflip", "vflip"))).tobytes(): i for i, v in enumerate(views)}
    return np.array([keys[_geometry(probe, np.array([t]), np.array([h]), np.array([v])).tobytes()]
                     for t, h, v in zip(params["turns"], params["hflip"], params["vflip"])])


def check_teacher(teacher: Path, class_names: list[str]) -> None:
    """Refuse a teacher that is not a readable checkpoint of the student's classes, before a run writes anything."""
    from dermcli.checkpoint import read_checkpoint

    meta = read_checkpoint(teacher)["meta"]
    if meta["task"] != "multiclass" or meta["class_names"] != class_names:
        raise DermcliError(f"--teacher {teacher}: a {meta['task']} model of classes {', '.join(meta['class_names'])}; "
                           f"the student needs {', '.join(class_names)}")


def teacher_logits(teacher: Path, paths: list[str], augment: str, class_names: list[str], track=None, log=lambda m: None) -> np.ndarray:
    """(N, views, K) logits of `teacher` for every geometric view of every image, cached on disk."""
    from dermcli.engine import checkpoint_digest, load_runner

    check_teacher(teacher, class_names)
    runner = load_runner(teacher, "auto", log, "cpu")
    views = geometric_views(augment)
    key = hashlib.sha256(f"{checkpoint_digest(teacher)}|{augment}|{'|'.join(paths)}".encode()).hexdigest()[:24]
    path = cache_dir() / f"teacher_{key}.npy"
    try:
        return np.load(path)
    except (OSError, ValueError):
        pass
    images = cached_images(paths, runner.meta["input_size"], track)
    logits = np.stack([runner.logits(_geometry(images, *(np.full(len(images), v[k]) for k in ("turns", "hflip", "vflip"))), track=track)
                       for v in views], axis=1)
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.save(f, logits)
    except (DermcliError, OSError):
        pass  # a cache we cannot write only costs time
    return logits


class ViewRecordingBatches(ImageBatches):
    """ImageBatches that remember which geometric view each image of the last training batch got."""

    def __init__(self, *args, views: list[dict], **kwargs):
        super().__init__(*args, **kwargs)
        self.views, self.last_views = views, None

    def draw(self, n: int, rng):
        params = super().draw(n, rng)
        self.last_views = view_index(params, self.views) if params else np.zeros(n, dtype=int)
        return params


class DistillationLoss:
    """(1 - weight) * the task loss on labels + weight * T^2 * KL(teacher_T || student_T), T the temperature.
    Called with the batch's row indices (train() passes indices instead of labels when distilling)."""

    def __init__(self, task_loss, labels: torch.Tensor, logits: np.ndarray, batches: ViewRecordingBatches, weight: float, temperature: float):
        self.task_loss, self.labels, self.batches = task_loss, labels, batches
        self.teacher = torch.from_numpy(logits).float()
        self.weight, self.temperature = weight, temperature

    def __call__(self, student: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        rows = rows.cpu()
        teacher = self.teacher[rows, torch.from_numpy(self.batches.last_views)].to(student.device)
        t = self.temperature
        soft = torch.nn.functional.kl_div(torch.log_softmax(student / t, 1), torch.log_softmax(teacher / t, 1), log_target=True,
                                          reduction="batchmean") * t * t
        return (1 - self.weight) * self.task_loss(student, self.labels[rows].to(student.device)) + self.weight * soft
