"""--device and --amp: devices that are absent are one-line errors; bf16 autocast trains on the CPU; a loss
that turns NaN stops the run with the last good epoch kept. CUDA tests run only where there is CUDA."""

import numpy as np
import pandas as pd
import pytest
import torch

import dermcli.training.run as training
from dermcli.core.errors import DermcliError
from dermcli.inference.predict import predict
from dermcli.models.checkpoint import read_checkpoint
from dermcli.runtime.devices import resolve_amp, resolve_device
from dermcli.training.config import TrainConfig
from tests.conftest import REPO, make_ham

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.fixture(scope="module")
def small_ham(tmp_path_factory):
    return make_ham(tmp_path_factory.mktemp("devices"), lesions_per_class=5, images_per_lesion=2)


def config(data, out, **changes):
    return TrainConfig(data=str(data), out=str(out), **{"epochs": 4, "batch_size": 8, "scheduler": "cosine", "patience": 100, **changes})


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_absent_or_unknown_devices_are_one_line_errors():
    with pytest.raises(DermcliError, match=r"--device cuda: not on this machine \(available: cpu"):
        resolve_device("cuda")
    with pytest.raises(DermcliError, match="--device 'tpu' is not a device"):
        resolve_device("tpu")
    assert str(resolve_device("auto")) == "cpu"


def test_amp_defaults_and_refusals():
    assert resolve_amp("", "cpu") == "none" and resolve_amp("bf16", "cpu") == "bf16"
    with pytest.raises(DermcliError, match="--amp fp16 needs a CUDA device"):
        resolve_amp("fp16", "cpu")
    with pytest.raises(DermcliError, match="--amp 'fp8' is not one of"):
        resolve_amp("fp8", "cpu")


def test_bf16_autocast_on_the_cpu_trains_and_keeps_an_fp32_checkpoint(small_ham, tmp_path):
    best = training.train(config(small_ham, tmp_path / "bf16", amp="bf16", lr=3e-3), device="cpu")
    history = pd.read_csv(tmp_path / "bf16" / "history.csv")
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]  # it learns
    checkpoint = read_checkpoint(best)
    assert checkpoint["meta"]["config"]["amp"] == "bf16"
    assert all(t.dtype in (torch.float32, torch.int64) for t in checkpoint["state_dict"].values())
    results, _ = predict([str(REPO / "examples" / "ISIC_0026531.jpg")], best, engine="torch")
    assert abs(sum(results[0].probabilities.values()) - 1) < 1e-5


def test_a_loss_that_turns_nan_stops_the_run_and_keeps_the_last_good_epoch(small_ham, tmp_path, monkeypatch):
    real_loss, real_epoch, epochs = training.loss_function, training.train_one_epoch, []

    def turns_nan(*args, **kwargs):
        loss = real_loss(*args, **kwargs)
        return lambda logits, y, batch: loss(logits, y, batch) * (float("nan") if len(epochs) >= 2 else 1.0)  # NaN from epoch 2 on

    def counted_epoch(*args, **kwargs):
        epochs.append(1)
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(training, "loss_function", turns_nan)
    monkeypatch.setattr(training, "train_one_epoch", counted_epoch)
    with pytest.raises(DermcliError, match="NaN or infinite in epoch 2: stopped; last.pt holds epoch 1"):
        training.train(config(small_ham, tmp_path / "nan"), device="cpu")
    last = read_checkpoint(tmp_path / "nan" / "last.pt")
    assert last["training_state"]["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in last["state_dict"].values() if t.is_floating_point())


@cuda
def test_cuda_training_with_bf16_and_evaluation_on_the_gpu(small_ham, tmp_path):
    best = training.train(config(small_ham, tmp_path / "gpu", epochs=2), device="cuda")
    assert read_checkpoint(best)["meta"]["amp"] in ("bf16", "none")
    on_gpu, _ = predict([str(REPO / "examples" / "ISIC_0026531.jpg")], best, engine="torch", device="cuda")
    on_cpu, _ = predict([str(REPO / "examples" / "ISIC_0026531.jpg")], best, engine="torch", device="cpu")
    assert np.allclose(list(on_gpu[0].probabilities.values()), list(on_cpu[0].probabilities.values()), atol=1e-3)


@pytest.mark.parametrize("augment", ["dihedral", "flips"])
@pytest.mark.parametrize("preprocessing", ["unit", "imagenet", "caffe", "inception"])
def test_tensor_augmentation_gives_the_numpy_paths_pixels_from_the_same_draws(augment, preprocessing):
    from dermcli.data.batches import ImageBatches

    images = np.random.default_rng(0).integers(0, 256, (64, 24, 24, 3), dtype=np.uint8)
    idx = np.random.default_rng(1).permutation(64)[:32]
    on_numpy = ImageBatches(images, preprocessing, augment).get(idx, np.random.default_rng(7))
    on_tensors = ImageBatches(images, preprocessing, augment, device=torch.device("cpu")).get(idx, np.random.default_rng(7))
    step = {"unit": 1 / 255, "imagenet": 1 / (255 * 0.224), "caffe": 1.0, "inception": 1 / 127.5}[preprocessing]
    difference = (on_numpy - on_tensors).abs()
    # Equal pixels, except where float rounding lands a jittered value on the other side of an integer: one level.
    assert difference.max() <= step * 1.01 + 1e-5 and (difference < 1e-5).float().mean() > 0.99
    plain = ImageBatches(images, preprocessing).get(idx)
    assert torch.allclose(plain, ImageBatches(images, preprocessing, device=torch.device("cpu")).get(idx), atol=1e-5)
