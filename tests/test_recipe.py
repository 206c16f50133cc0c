"""The longer recipe's options: random resized crops (--crop-scale), learning-rate warm-up (--lr-warmup), and a
resumed cosine schedule that follows a new --epochs total."""

import numpy as np
import pytest
import torch

from dermcli.core.errors import DermcliError
from dermcli.data.batches import ImageBatches, crop_and_resize, draw_crops
from dermcli.training.config import TrainConfig
from dermcli.training.loop import load_scheduler_state, make_scheduler


def halves(n: int = 4, size: int = 32) -> np.ndarray:
    """Images black on the left half, white on the right."""
    images = np.zeros((n, size, size, 3), np.uint8)
    images[:, :, size // 2:] = 255
    return images


def as_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255


def test_a_whole_image_crop_is_the_image_and_a_corner_crop_holds_only_that_corner():
    x = as_tensor(halves())
    whole = {"crop_area": np.ones(4), "crop_aspect": np.ones(4), "crop_x": np.zeros(4), "crop_y": np.zeros(4)}
    assert torch.equal(crop_and_resize(x, whole), x)
    right = {**whole, "crop_area": np.full(4, 0.2), "crop_x": np.ones(4)}  # a crop against the right edge, inside the white half
    assert crop_and_resize(x, right).min() == pytest.approx(1.0, abs=1e-5)
    left = {**right, "crop_x": -np.ones(4)}
    assert crop_and_resize(x, left).max() == pytest.approx(0.0, abs=1e-5)


def test_crops_keep_their_drawn_share_of_the_area():
    rng = np.random.default_rng(0)
    params = draw_crops(10_000, rng, 0.5)
    assert params["crop_area"].min() >= 0.5 and params["crop_area"].max() <= 1.0
    assert np.all((params["crop_aspect"] >= 3 / 4 - 1e-9) & (params["crop_aspect"] <= 4 / 3 + 1e-9))
    # a crop of share a of the white-right image, centred, shows white over half its width
    x = as_tensor(halves(1, 64))
    centred = {"crop_area": np.array([0.25]), "crop_aspect": np.ones(1), "crop_x": np.zeros(1), "crop_y": np.zeros(1)}
    assert crop_and_resize(x, centred).mean() == pytest.approx(0.5, abs=0.02)


@pytest.mark.parametrize("augment", ["none", "dihedral"])
def test_cropping_batches_agree_on_the_numpy_and_tensor_paths_and_for_every_process_share(augment):
    images = np.random.default_rng(1).integers(0, 256, (8, 24, 24, 3), dtype=np.uint8)
    idx = np.array([5, 1, 7, 0, 3, 2])
    numpy_path = ImageBatches(images, "imagenet", augment, crop_scale=0.4).get(idx, np.random.default_rng(3))
    tensor_path = ImageBatches(images, "imagenet", augment, device=torch.device("cpu"), crop_scale=0.4).get(idx, np.random.default_rng(3))
    assert torch.allclose(numpy_path, tensor_path, atol=2e-2)  # uint8 rounding of the jitter on one path only
    whole = ImageBatches(images, "imagenet", augment, crop_scale=0.4).get(idx, np.random.default_rng(3))
    part = ImageBatches(images, "imagenet", augment, crop_scale=0.4).get(idx, np.random.default_rng(3), np.array([1, 4]))
    assert torch.equal(part, whole[[1, 4]])
    plain = ImageBatches(images, "imagenet", augment).get(idx, np.random.default_rng(3))
    assert not torch.allclose(plain, whole)  # the crops changed the pixels


def test_without_crops_the_draws_are_the_ones_runs_always_drew():
    images = np.random.default_rng(1).integers(0, 256, (8, 24, 24, 3), dtype=np.uint8)
    a = ImageBatches(images, "unit", "dihedral").draw(8, np.random.default_rng(5))
    b = ImageBatches(images, "unit", "dihedral", crop_scale=0.5).draw(8, np.random.default_rng(5))
    assert all(np.array_equal(a[k], b[k]) for k in a)


def rates(total: int, warmup: int, epochs: range, state=None):
    cfg = TrainConfig(model="cnn", scheduler="cosine", lr_warmup=warmup, epochs=total, lr=1.0).resolved()
    optimizer = torch.optim.AdamW(torch.nn.Linear(2, 2).parameters(), lr=1.0)
    scheduler = make_scheduler(cfg, optimizer, total)
    if state:
        load_scheduler_state(scheduler, state[0])
        optimizer.load_state_dict(state[1])
    seen = []
    for _ in epochs:
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return seen, (scheduler.state_dict(), optimizer.state_dict())


def test_warm_up_rises_linearly_then_the_cosine_decays_from_the_full_rate():
    seen, _ = rates(6, 2, range(6))
    assert seen[:3] == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert all(a > b for a, b in zip(seen[2:], seen[3:]))


@pytest.mark.parametrize("new_total", [8, 16])
def test_a_resumed_cosine_anneals_to_the_new_total_instead_of_climbing_again(new_total):
    first, state = rates(12, 1, range(4))
    rest, _ = rates(new_total, 1, range(4, new_total), state)
    assert all(a > b for a, b in zip(first[1:] + rest, (first[1:] + rest)[1:]))  # falls every epoch after the warm-up
    assert rest[-1] < 0.1


@pytest.mark.parametrize("changes, message", [
    ({"crop_scale": 0.5, "freeze": "backbone", "model": "resnet18"}, "--crop-scale crops images as they train"),
    ({"lr_warmup": 2, "scheduler": "plateau"}, "--lr-warmup 2 needs --scheduler cosine"),
    ({"lr_warmup": 5, "scheduler": "cosine", "epochs": 5}, "fewer epochs than --epochs 5"),
    ({"crop_scale": 0.01}, "--crop-scale 0.01: must be in"),
])
def test_recipe_options_that_cannot_apply_are_refused(changes, message):
    with pytest.raises(DermcliError, match=message):
        TrainConfig(**{"model": "cnn", **changes}).resolved()
