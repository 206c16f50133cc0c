"""Explanations that must be right: a model that learned where a bright patch sits must be explained by a map
that peaks on the patch, and a randomised model must not give the same maps (Adebayo et al., 2018)."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from dermcli.inference.explain import default_layer, explanation_map
from tests.conftest import run_cli

SIZE, PATCH = 32, 6


class CoordNet(nn.Module):
    """Convolutions that also see each pixel's coordinates, so they can tell left from right (plain
    convolutions with global pooling cannot)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(5, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
                                      nn.MaxPool2d(2), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 2))

    def forward(self, x):
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, x.shape[2]), torch.linspace(-1, 1, x.shape[3]), indexing="ij")
        coords = torch.stack([xs, ys]).expand(len(x), 2, -1, -1)
        return self.head(self.features(torch.cat([x, coords], 1)))


def patches(n: int, seed: int):
    """Dark noisy images with one bright patch; class 0 when it sits in the left third, 1 in the right third."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 0.3, (n, 3, SIZE, SIZE)).astype(np.float32)
    labels = rng.integers(0, 2, n)
    corners = []
    for i, label in enumerate(labels):
        left = int(rng.integers(1, 9)) if label == 0 else int(rng.integers(SIZE - 9 - PATCH + 6, SIZE - PATCH))
        top = int(rng.integers(0, SIZE - PATCH))
        x[i, :, top:top + PATCH, left:left + PATCH] = rng.uniform(0.8, 1.0)
        corners.append((top, left))
    return torch.from_numpy(x), torch.from_numpy(labels), corners


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    model = CoordNet()
    optimizer = torch.optim.Adam(model.parameters(), 3e-3)
    x, y, _ = patches(1024, 0)
    for step in range(150):
        idx = torch.randint(0, len(x), (64,))
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    test_x, test_y, corners = patches(40, 1)
    with torch.no_grad():
        assert (model.eval()(test_x).argmax(1) == test_y).float().mean() >= 0.95  # it learned the task
    return model, test_x, test_y, corners


def on_patch(heat: np.ndarray, corner, margin: int = 2) -> bool:
    row, col = np.unravel_index(heat.argmax(), heat.shape)
    top, left = corner
    return top - margin <= row < top + PATCH + margin and left - margin <= col < left + PATCH + margin


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "layercam", "input-x-gradient"])
def test_the_map_peaks_on_the_patch_that_decides_the_class(trained, method):
    model, x, y, corners = trained
    hits = [on_patch(explanation_map(model, x[i:i + 1], method, int(y[i]))[0], corners[i]) for i in range(len(x))]
    assert np.mean(hits) >= 0.9


def test_an_ensemble_map_averages_its_members_maps(trained):
    import copy

    from dermcli.models.ensemble import Ensemble

    model, x, y, corners = trained
    ensemble = Ensemble([model, copy.deepcopy(model)], [1.0, 1.0])
    maps = [explanation_map(ensemble, x[i:i + 1], "gradcam", int(y[i])) for i in range(len(x))]
    assert np.mean([on_patch(heat, corner) for (heat, _, _), corner in zip(maps, corners)]) >= 0.9
    assert maps[0][1].startswith("each member's ")


def test_saliency_is_the_largest_absolute_input_gradient_over_colours(trained):
    model, x, y, _ = trained
    image = x[:1].clone().requires_grad_(True)
    model(image)[0, int(y[0])].backward()
    by_hand = image.grad.abs().amax(1)[0]
    by_hand = ((by_hand - by_hand.min()) / (by_hand.max() - by_hand.min())).numpy()
    assert np.allclose(explanation_map(model, x[:1], "saliency", int(y[0]))[0], by_hand, atol=1e-6)


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "layercam", "input-x-gradient", "saliency"])
def test_a_randomised_model_gives_other_maps(trained, method):
    model, x, y, _ = trained
    random = copy.deepcopy(model)
    torch.manual_seed(123)
    for module in random.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    correlations = []
    for i in range(len(x)):
        a = explanation_map(model, x[i:i + 1], method, int(y[i]))[0].ravel()
        b = explanation_map(random, x[i:i + 1], method, int(y[i]))[0].ravel()
        ranks = [np.argsort(np.argsort(v)) for v in (a, b)]  # Spearman, as Adebayo et al.
        correlations.append(np.corrcoef(*ranks)[0, 1] if np.ptp(b) > 0 else 0.0)
    assert np.nanmean(correlations) < 0.5


@pytest.mark.parametrize("name, layer", [("resnet18", "backbone.layer4"), ("efficientnet_b0", "backbone.features"),
                                         ("convnext_tiny", "backbone.features"), ("densenet121", "backbone.features"),
                                         ("vit_b_32", "backbone.encoder.layers.encoder_layer_11.ln_1")])
def test_every_backbone_has_a_map(name, layer):
    from dermcli.models.registry import get_backend

    torch.manual_seed(0)
    model = get_backend(name).build(7, {"input_size": 64, "head": "linear"}).eval()
    assert default_layer(model, 64) == layer
    heat, explained, grid = explanation_map(model, torch.randn(1, 3, 64, 64), "gradcam", 3)
    assert heat.shape == (64, 64) and np.isfinite(heat).all() and explained == layer and grid[0] >= 2


@pytest.mark.slow
def test_explain_writes_a_figure_per_image_and_reports_bad_files(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "broken.jpg").write_bytes(b"not a jpeg")
    result = run_cli("explain", "examples/ISIC_0024431.jpg", str(tmp_path / "in"), "--out", str(tmp_path / "maps"),
                     cwd=__import__("tests.conftest").conftest.REPO)
    assert result.returncode == 1
    assert "skipped" in result.stdout and "broken.jpg" in result.stdout and "Traceback" not in result.stderr
    assert sorted(p.name for p in (tmp_path / "maps").iterdir()) == ["ISIC_0024431_gradcam.png", "explanations.csv"]
    bad = run_cli("explain", "examples/ISIC_0024431.jpg", "--out", str(tmp_path / "m"), "--method", "magic",
                  cwd=__import__("tests.conftest").conftest.REPO)
    assert bad.returncode != 0 and len(bad.stderr.strip().splitlines()) == 1 and "--method" in bad.stderr


@pytest.mark.slow
def test_predict_explain_writes_figures_next_to_predictions(tmp_path):
    from tests.conftest import REPO

    result = run_cli("predict", str(REPO / "examples" / "ISIC_0024431.jpg"), "--model", "resnet50", "--explain", str(tmp_path / "maps"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "maps" / "ISIC_0024431_gradcam.png").stat().st_size > 10_000
