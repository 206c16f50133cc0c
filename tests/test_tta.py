"""Test-time augmentation: the views, their average, and that it changes nothing for a model that cannot tell them apart."""

import numpy as np
import pytest
import torch
from torch import nn

from dermcli.core.errors import DermcliError
from dermcli.inference.runners import TorchRunner
from dermcli.inference.tta import predict_probabilities, tta_views
from dermcli.models.outputs import probabilities
from tests.conftest import REPO, run_cli

EXAMPLE = str(REPO / "examples" / "ISIC_0026531.jpg")

META = {"preprocessing": "unit", "temperature": 1.5}


def images(n=6, size=16, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def runner(model):
    torch.manual_seed(0)
    return TorchRunner(model.eval(), META)


def test_a_model_blind_to_flips_and_turns_gets_the_same_answer_with_tta():
    # A 1x1 convolution and a global average pool cannot see where anything is: every symmetry of the square is invisible.
    blind = runner(nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 7)))
    x = images()
    plain = predict_probabilities(blind, x, "none")
    for tta in ("flips", "dihedral"):
        assert np.allclose(predict_probabilities(blind, x, tta), plain, atol=1e-6)


def test_tta_is_the_mean_of_the_calibrated_views():
    seeing = runner(nn.Sequential(nn.Flatten(), nn.Linear(16 * 16 * 3, 7)))  # sees every pixel where it is
    x = images()
    views = [x, x[:, :, ::-1], x[:, ::-1], x[:, ::-1, ::-1]]
    by_hand = np.mean([probabilities(seeing.logits(np.ascontiguousarray(v)), META["temperature"]) for v in views], axis=0)
    assert np.allclose(predict_probabilities(seeing, x, "flips"), by_hand, atol=1e-6)
    assert not np.allclose(predict_probabilities(seeing, x, "none"), by_hand, atol=1e-3)


def test_dihedral_views_are_the_eight_symmetries_of_the_square():
    x = images(n=1)
    views = tta_views(x, "dihedral")
    assert len(views) == 8 and len({v.tobytes() for v in views}) == 8
    assert any(np.array_equal(v[0], np.rot90(x[0])) for v in views) and any(np.array_equal(v[0], x[0].transpose(1, 0, 2)) for v in views)
    with pytest.raises(DermcliError, match="--tta 'all' is not one of none, flips, dihedral"):
        tta_views(x, "all")


@pytest.mark.slow
def test_predict_takes_tta_on_the_command_line():
    plain = run_cli("predict", EXAMPLE, "--json", "--engine", "torch")
    flips = run_cli("predict", EXAMPLE, "--json", "--engine", "torch", "--tta", "flips")
    assert plain.returncode == flips.returncode == 0 and plain.stdout != flips.stdout
    bad = run_cli("predict", EXAMPLE, "--tta", "sideways")
    assert bad.returncode == 1 and bad.stderr.strip() == "error: --tta 'sideways' is not one of none, flips, dihedral"
