"""Knowledge distillation (`train --teacher PATH`): the student learns from the labels and from a trained
teacher's softened probabilities on the same view of each image (Hinton et al., 2015).

The teacher sees each training image at its own input size, turned and mirrored exactly as the student's
augmentation drew it. Those geometric views are few (8 for dihedral, 4 for flips), so the teacher's logits
for all of them are computed once and cached; the colour jitter is not replayed for the teacher (it would
mean a teacher forward pass per step), so its targets are those of the un-jittered view.
"""

import functools
import hashlib
from pathlib import Path

import numpy as np
import torch

from dermcli.core.errors import DermcliError
from dermcli.core.files import atomic_path
from dermcli.data.batches import ImageBatches
from dermcli.data.cache import cache_dir, cache_key, cached_images
from dermcli.data.transforms import apply_augmentation
from dermcli.inference.loading import checkpoint_digest, load_runner
from dermcli.models.checkpoint import read_checkpoint

PROBE = np.arange(9, dtype=np.uint8).reshape(1, 3, 3, 1).repeat(3, axis=3)  # every symmetry moves these pixels differently


def _geometry(images: np.ndarray, turns, hflip, vflip) -> np.ndarray:
    return apply_augmentation(images, {"turns": turns, "hflip": hflip.astype(bool), "vflip": vflip.astype(bool)})


def apply_view(images: np.ndarray, view: dict) -> np.ndarray:
    """`images`, every one turned and mirrored as `view` (a geometric_views entry)."""
    return _geometry(images, *(np.full(len(images), view[k]) for k in ("turns", "hflip", "vflip")))


def _view_of_settings(augment: str) -> dict[tuple[int, int, int], tuple[int, int, int]]:
    """Every (turns, hflip, vflip) the augmentation can draw -> the first setting giving the same pixels."""
    settings = [(t, h, v) for t in range(4 if augment == "dihedral" else 1) for h in (0, 1) for v in (0, 1)] if augment != "none" else [(0, 0, 0)]
    first: dict[bytes, tuple[int, int, int]] = {}
    return {setting: first.setdefault(_geometry(PROBE, *(np.array([x]) for x in setting)).tobytes(), setting) for setting in settings}


def geometric_views(augment: str) -> list[dict]:
    """One (turns, hflip, vflip) setting per distinct view the augmentation can draw."""
    distinct = dict.fromkeys(_view_of_settings(augment).values())
    return [{"turns": t, "hflip": h, "vflip": v} for t, h, v in distinct]


def view_index(params: dict, views: list[dict]) -> np.ndarray:
    """For drawn augmentation params, the index in `views` of each image's geometric view."""
    table = _settings_to_view(tuple((v["turns"], v["hflip"], v["vflip"]) for v in views))
    return np.array([table[(int(t), int(h), int(v))] for t, h, v in zip(params["turns"], params["hflip"], params["vflip"])])


@functools.cache
def _settings_to_view(views: tuple[tuple[int, int, int], ...]) -> dict[tuple[int, int, int], int]:
    """Each of the 16 (turns, hflip, vflip) settings -> the index of the view with the same pixels (once per run,
    not per image of every batch)."""
    index = {_geometry(PROBE, *(np.array([x]) for x in view)).tobytes(): i for i, view in enumerate(views)}
    settings = ((t, h, v) for t in range(4) for h in (0, 1) for v in (0, 1))
    return {s: index[key] for s in settings if (key := _geometry(PROBE, *(np.array([x]) for x in s)).tobytes()) in index}


def check_teacher(teacher: Path, class_names: list[str]) -> None:
    """Refuse a teacher that is not a readable checkpoint of the student's classes, before a run writes anything."""

    meta = read_checkpoint(teacher)["meta"]
    if meta["task"] != "multiclass" or meta["class_names"] != class_names:
        raise DermcliError(f"--teacher {teacher}: a {meta['task']} model of classes {', '.join(meta['class_names'])}; "
                           f"the student needs {', '.join(class_names)}")


def teacher_cache_key(teacher: Path, paths: list[str], augment: str, size: int) -> str:
    """The teacher's weights, the views, and the images' identity at the teacher's input size `size` (as the
    decoded-image cache keys them): replaced images, even of the same size and mtime, get new logits."""

    return hashlib.sha256(f"{checkpoint_digest(teacher)}|{augment}|{cache_key(paths, size)}".encode()).hexdigest()[:24]


def teacher_logits(teacher: Path, paths: list[str], augment: str, class_names: list[str], track=None, log=lambda m: None) -> np.ndarray:
    """(N, views, K) logits of `teacher` for every geometric view of every image, cached on disk."""

    check_teacher(teacher, class_names)
    runner = load_runner(teacher, "auto", log, "cpu")
    views = geometric_views(augment)
    path = cache_dir() / f"teacher_{teacher_cache_key(teacher, paths, augment, runner.meta['input_size'])}.npy"
    try:
        return np.load(path)
    except (OSError, ValueError):
        pass
    logits = view_logits(runner, cached_images(paths, runner.meta["input_size"], track), views, track=track)
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.save(f, logits)
    except (DermcliError, OSError):
        pass  # a cache we cannot write only costs time
    return logits


def view_logits(runner, images: np.ndarray, views: list[dict], batch_size: int = 32, track=None) -> np.ndarray:
    """(N, views, K) logits of `runner` for `images` turned and mirrored as each of `views`, one batch of images
    at a time through all its views: memory holds one batch's views. A whole-set view costs ~1.8 MB an image at
    224 in apply_augmentation's float32 temporaries (12 GiB for 7010 images), all of it new memory the kernel must
    fault in, each view again (benchmarks/distill.py). Each runner call is one batch of one view, the batches a
    whole-set view would be cut into, so the logits are the same."""
    starts = range(0, len(images), batch_size)
    out = [np.zeros((0, len(views), len(runner.meta["class_names"])), dtype=np.float32)]
    for s in track(starts, f"teacher logits, {len(views)} views", len(starts)) if track else starts:
        batch = images[s:s + batch_size]
        out.append(np.stack([runner.logits(apply_view(batch, v), batch_size) for v in views], axis=1))
    return np.concatenate(out)


class ViewRecordingBatches(ImageBatches):
    """ImageBatches that remember which geometric view each image of the last training batch got."""

    def __init__(self, *args, views: list[dict], **kwargs):
        super().__init__(*args, **kwargs)
        self.views, self.last_views = views, None

    def draw(self, n: int, rng, part=None):
        params = super().draw(n, rng, part)
        self.last_views = view_index(params, self.views) if params else np.zeros(n if part is None else len(part), dtype=int)
        return params


class DistillationLoss:
    """(1 - weight) * the task loss on labels + weight * T^2 * KL(teacher_T || student_T), T the temperature.
    Called with the rows' indices and the global batch's (run.prepare_fit passes indices instead of labels when
    distilling); both terms are shares of the global batch's mean, as objectives' losses are."""

    def __init__(self, task_loss, labels: torch.Tensor, logits: np.ndarray, batches: ViewRecordingBatches, weight: float, temperature: float):
        self.task_loss, self.labels, self.batches = task_loss, labels, batches
        self.teacher = torch.from_numpy(logits).float()
        self.weight, self.temperature = weight, temperature

    def __call__(self, student: torch.Tensor, rows: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        rows = rows.cpu()
        teacher = self.teacher[rows, torch.from_numpy(self.batches.last_views)].to(student.device)
        t = self.temperature
        soft = torch.nn.functional.kl_div(torch.log_softmax(student / t, 1), torch.log_softmax(teacher / t, 1), log_target=True,
                                          reduction="sum") * t * t / len(batch)
        task = self.task_loss(student, self.labels[rows].to(student.device), self.labels[batch.cpu()])
        return (1 - self.weight) * task + self.weight * soft
