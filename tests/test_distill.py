"""Knowledge distillation: the teacher sees each image as the student's augmentation turned and mirrored it,
the loss mixes labels and softened teacher probabilities, and a distilled run trains end to end."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from dermcli.data.cache import cache_dir
from dermcli.data.transforms import apply_augmentation, draw_augmentation
from dermcli.inference.runners import TorchRunner
from dermcli.training.distill import DistillationLoss, ViewRecordingBatches, apply_view, geometric_views, view_index, view_logits
from dermcli.training.objectives import CrossEntropy
from tests.conftest import run_cli


@pytest.mark.parametrize("augment, count", [("dihedral", 8), ("flips", 4), ("none", 1)])
def test_each_drawn_augmentation_maps_to_the_view_with_the_same_geometry(augment, count):
    views = geometric_views(augment)
    assert len(views) == count
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (1, 5, 5, 3), dtype=np.uint8)
    if augment == "none":
        return
    params = draw_augmentation(64, rng, turns=augment == "dihedral", jitter=0)
    for i, v in enumerate(view_index(params, views)):
        drawn = apply_augmentation(image, {k: params[k][i:i + 1] for k in ("turns", "hflip", "vflip")})
        chosen = apply_augmentation(image, {k: np.array([views[v][k]]) for k in ("turns", "hflip", "vflip")})
        assert np.array_equal(drawn, chosen)


class CallSizes:
    """A runner that remembers how many images each call handed it."""

    def __init__(self, runner):
        self.runner, self.meta, self.sizes = runner, runner.meta, []

    def logits(self, images, batch_size=32, track=None):
        self.sizes.append(len(images))
        return self.runner.logits(images, batch_size)


@pytest.mark.parametrize("augment", ["dihedral", "flips", "none"])
def test_the_teacher_sees_a_batch_at_a_time_and_gives_the_logits_of_whole_set_views(augment):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 26 * 26, 7))
    runner = TorchRunner(net, {"preprocessing": "unit", "class_names": list("abcdefg"), "input_size": 28})
    images = np.random.default_rng(0).integers(0, 256, (45, 28, 28, 3), dtype=np.uint8)  # two full batches of 16 and a ragged one
    views = geometric_views(augment)
    whole_set = np.stack([runner.logits(apply_view(images, v), 16) for v in views], axis=1)  # teacher_logits before #24
    counted = CallSizes(runner)
    streamed = view_logits(counted, images, views, batch_size=16)
    assert streamed.shape == (45, len(views), 7) and streamed.dtype == np.float32
    assert np.allclose(streamed, whole_set, rtol=0, atol=1e-5)
    assert max(counted.sizes) == 16 and sum(counted.sizes) == 45 * len(views)  # never more than one batch of one view
    if augment == "dihedral":
        assert np.abs(streamed - streamed[:, :1]).max() > 0.05  # the views differ, so the comparison tells their order
    assert view_logits(counted, images[:0], views).shape == (0, len(views), 7)


def test_the_loss_mixes_labels_and_the_teacher_of_each_images_view():
    torch.manual_seed(0)
    labels = torch.tensor([0, 3, 6])
    teacher = np.random.default_rng(0).normal(size=(3, 8, 7)).astype(np.float32)
    batches = ViewRecordingBatches(np.zeros((3, 4, 4, 3), dtype=np.uint8), "unit", "dihedral", views=geometric_views("dihedral"))
    batches.get(np.arange(3), np.random.default_rng(1))
    student = torch.randn(3, 7)
    ce = CrossEntropy(torch.ones(7), 0.0)
    rows = torch.arange(3)
    expected = torch.nn.functional.cross_entropy(student, labels)
    assert torch.allclose(DistillationLoss(ce, labels, teacher, batches, 0.0, 2.0)(student, rows, rows), expected)
    same = torch.from_numpy(teacher[np.arange(3), batches.last_views])
    assert DistillationLoss(ce, labels, teacher, batches, 1.0, 2.0)(same, rows, rows).abs() < 1e-6  # the student matches the teacher
    other = torch.from_numpy(teacher[np.arange(3), (batches.last_views + 1) % 8])
    assert DistillationLoss(ce, labels, teacher, batches, 1.0, 2.0)(other, rows, rows) > 1e-3


@pytest.mark.slow
def test_a_distilled_student_trains_and_records_its_teacher(real_subset, tmp_path):
    teacher = tmp_path / "teacher"
    assert run_cli("train", "--data", str(real_subset), "--out", str(teacher), "--epochs", "1", "--batch-size", "16",
                   "--model", "resnet18", "--no-pretrained", "--input-size", "48").returncode == 0
    student = tmp_path / "student"
    result = run_cli("train", "--data", str(real_subset), "--out", str(student), "--epochs", "2", "--batch-size", "16",
                     "--teacher", str(teacher / "best.pt"), "--distill-weight", "0.7")
    assert result.returncode == 0, result.stderr
    config = json.loads((student / "config.json").read_text())
    assert config["teacher"] == str(teacher / "best.pt") and config["distill_weight"] == 0.7
    cached = list(cache_dir().glob("teacher_*.npy"))
    assert len(cached) == 1 and np.load(cached[0]).shape == (config_rows(student), 8, 7)  # every training image, 8 views, 7 classes


def config_rows(run) -> int:
    return int((pd.read_csv(run / "split.csv")["split"] == "train").sum())


@pytest.mark.slow
def test_a_teacher_of_another_task_or_options_without_one_are_refused(real_subset, tmp_path):
    binary = tmp_path / "binary"
    assert run_cli("train", "--data", str(real_subset), "--out", str(binary), "--epochs", "1", "--batch-size", "16", "--task", "binary",
                   "--model", "resnet18", "--no-pretrained", "--input-size", "32").returncode == 0
    refused = run_cli("train", "--data", str(real_subset), "--out", str(tmp_path / "s"), "--epochs", "1", "--teacher", str(binary / "best.pt"))
    assert refused.returncode == 1 and "--teacher" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert not any((tmp_path / "s").iterdir())  # refused before the run wrote anything
    alone = run_cli("train", "--data", str(real_subset), "--out", str(tmp_path / "t"), "--distill-weight", "0.3")
    assert alone.returncode == 1 and "need --teacher" in alone.stderr
