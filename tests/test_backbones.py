"""Backbones by name: torchvision's registry and timm, through train, eval, export and predict on real images."""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from dermcli.core.errors import DermcliError
from dermcli.evaluation.card import model_card
from dermcli.evaluation.evaluate import evaluate
from dermcli.evaluation.report import write_reports
from dermcli.inference.export import TOLERANCE
from dermcli.inference.predict import predict
from dermcli.models.registry import get_backend
from dermcli.training.config import TrainConfig
from dermcli.training.run import train
from tests.conftest import REPO, run_cli

SHARED_LITE0 = REPO.parent / "shared" / "weights" / "tf_efficientnet_lite0_imagenet_timm.pt"


def small_run(data, out, model, **changes):
    """One epoch at 64 pixels (every family here takes it): enough to exercise the whole path on CPU."""
    settings = {"model": model, "epochs": 1, "batch_size": 16, "pretrained": False, "input_size": 64, **changes}
    return train(TrainConfig(data=str(data), out=str(out), **settings))


@pytest.mark.parametrize("model", ["resnet18", "efficientnet_b0", "convnext_tiny", "densenet121", "vit_b_32"])
@pytest.mark.slow
def test_families_train_evaluate_export_and_predict(real_subset, tmp_path, model):
    best = small_run(real_subset, tmp_path / "run", model)
    # --engine onnx: exported once, checked against PyTorch within TOLERANCE (export_onnx raises otherwise) and
    # never the silent fallback to PyTorch that auto takes when an export fails
    folder = evaluate(best, real_subset, tmp_path / "eval", split="val", engine="onnx")
    predictions = pd.read_csv(folder / "predictions.csv")
    assert len(predictions) > 0 and np.allclose(predictions.filter(like="p_").sum(axis=1), 1, atol=1e-4)
    write_reports(folder, plots=False)
    assert f"torchvision {model}" in model_card(folder).read_text()
    image = sorted(real_subset.rglob("*.jpg"))[0]
    onnx_result, _ = predict([str(image)], best, engine="onnx")
    torch_result, _ = predict([str(image)], best, engine="torch")
    assert abs(onnx_result[0].malignant_score - torch_result[0].malignant_score) < TOLERANCE
    assert onnx_result[0].label in onnx_result[0].probabilities


@pytest.mark.slow
def test_pretrained_weights_come_through_torchvisions_weights_api(real_subset, tmp_path, monkeypatch):
    from torchvision.models import ResNet18_Weights, resnet18

    home = tmp_path / "torch_home"
    target = home / "hub" / "checkpoints" / Path(ResNet18_Weights.IMAGENET1K_V1.url).name
    target.parent.mkdir(parents=True)
    torch.manual_seed(1)
    imagenet = resnet18(weights=None).state_dict()
    torch.save(imagenet, target)
    monkeypatch.setenv("TORCH_HOME", str(home))
    messages = []
    model = get_backend("resnet18").build(7, {"head": "linear"})
    get_backend("resnet18").initialise(model, {"pretrained": True}, messages.append)
    assert "ResNet18_Weights.IMAGENET1K_V1" in messages[0] and "random: head" in messages[0]
    assert torch.equal(model.backbone.layer4[1].conv2.weight, imagenet["layer4.1.conv2.weight"])
    listing = run_cli("models", "resnet18", env={"TORCH_HOME": str(home)})
    assert listing.returncode == 0 and "resnet18" in listing.stdout and "yes" in listing.stdout


def test_without_the_weights_the_error_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    with pytest.raises(DermcliError, match="use --no-pretrained, or --init PATH"):
        get_backend("resnet18").initialise(get_backend("resnet18").build(7, {}), {"pretrained": True}, print)


def test_heads_tasks_and_sizes_on_any_backbone():
    backend = get_backend("efficientnet_b0")
    assert (backend.input_size, backend.default_preprocessing) == (224, "imagenet")  # from the weights' own transforms
    card = backend.build(1, {"head": "card", "input_size": 64}).eval()
    assert card(torch.rand(2, 3, 64, 64)).shape == (2, 1) and isinstance(card.head[0], torch.nn.BatchNorm1d)
    assert card.head[0].num_features == 1280
    assert get_backend("efficientnet_v2_l").default_preprocessing == "inception"  # its weights use mean = std = 0.5
    assert get_backend("inception_v3").input_size == 299
    with pytest.raises(DermcliError, match="--head 'deep' is not one of linear, card"):
        backend.build(7, {"head": "deep"})


@pytest.mark.slow
def test_an_unknown_name_is_one_line_with_close_matches(tmp_path):
    result = run_cli("train", "--model", "convnext_tiyn", "--data", str(tmp_path), "--out", str(tmp_path / "r"))
    assert result.returncode == 1 and "did you mean convnext_tiny" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_options_a_backbone_does_not_use_are_refused():
    with pytest.raises(DermcliError, match="--strides does not apply to --model resnet18"):
        TrainConfig(data="x", out="y", model="resnet18", strides="v1").resolved()
    with pytest.raises(DermcliError, match="--input-size does not apply to --model cnn"):
        TrainConfig(data="x", out="y", model="cnn", input_size=64).resolved()


def test_timm_needs_timm_and_says_how_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # as if not installed
    with pytest.raises(DermcliError, match='pip install "dermcli\\[timm\\]"'):
        get_backend("timm/tf_efficientnet_lite0")


def test_timm_efficientnet_lite0_from_the_shared_imagenet_file(real_subset, tmp_path):
    pytest.importorskip("timm")
    if not SHARED_LITE0.is_file():
        pytest.skip(f"{SHARED_LITE0} not found")
    backend = get_backend("timm/tf_efficientnet_lite0")
    assert (backend.input_size, backend.default_preprocessing) == (224, "inception")  # timm's pretrained config
    best = small_run(real_subset, tmp_path / "lite0", "timm/tf_efficientnet_lite0", init=str(SHARED_LITE0), freeze="backbone")
    from dermcli.models.loading import load_model

    model, meta = load_model(best)
    imagenet = torch.load(SHARED_LITE0, weights_only=True)
    assert torch.equal(model.backbone.blocks[3][0].conv_pw.weight, imagenet["blocks.3.0.conv_pw.weight"])  # frozen: unchanged
    assert meta["preprocessing"] == "inception"
    results, _ = predict([str(sorted(real_subset.rglob("*.jpg"))[0])], best)
    assert results and abs(sum(results[0].probabilities.values()) - 1) < 1e-4


@pytest.mark.parametrize("model, point", [("resnet18", "layer3"), ("efficientnet_b0", "features.4"), ("convnext_tiny", "features.5"),
                                          ("densenet121", "features.denseblock3"), ("vit_b_32", "encoder.layers.encoder_layer_5")])
def test_a_backbone_cut_at_a_named_stage_computes_what_it_did_whole(model, point):
    net = get_backend(model).build(7, {"input_size": 64}).eval()
    prefix, rest = get_backend(model).split_frozen(net, point)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(rest(prefix(x)), net(x), atol=1e-5)
    shared = {id(p) for p in net.parameters()}
    assert all(id(p) in shared for p in [*prefix.parameters(), *rest.parameters()])  # training the rest trains the model


def test_freezing_at_a_stage_trains_only_what_follows_it_on_cached_features(real_subset, tmp_path):
    import os

    from dermcli.models.loading import load_model

    cache = Path(os.environ["DERMCLI_CACHE_DIR"])
    before = set(cache.glob("features_*"))
    best = small_run(real_subset, tmp_path / "run", "resnet18", freeze="layer3", seed=3)
    assert set(cache.glob("features_*")) - before  # layer3's outputs were computed once and cached
    torch.manual_seed(3)
    start = get_backend("resnet18").build(7, {"input_size": 64})  # what the run started from: same seed, built first
    trained, _ = load_model(best)
    assert torch.equal(trained.backbone.layer3[1].conv2.weight, start.backbone.layer3[1].conv2.weight)  # frozen
    assert not torch.equal(trained.backbone.layer4[1].conv2.weight, start.backbone.layer4[1].conv2.weight)  # trained


def test_a_cut_inside_a_residual_block_or_at_no_module_is_refused():
    net = get_backend("resnet18").build(7, {})
    with pytest.raises(DermcliError, match="later layers also use"):
        get_backend("resnet18").split_frozen(net, "layer3.0.conv1")
    with pytest.raises(DermcliError, match="no such module in the backbone .*layer3"):
        get_backend("resnet18").split_frozen(net, "layer9")


@pytest.mark.slow
def test_models_lists_timm_and_whether_its_weights_are_cached(tmp_path):
    pytest.importorskip("timm")
    snapshot = tmp_path / "hf" / "models--timm--tf_efficientnet_lite0.in1k"
    (snapshot / "refs").mkdir(parents=True)
    (snapshot / "refs" / "main").write_text("0123abc")
    (snapshot / "snapshots" / "0123abc").mkdir(parents=True)
    (snapshot / "snapshots" / "0123abc" / "model.safetensors").write_bytes(b"weights")
    listing = run_cli("models", "--timm", "efficientnet_lite0", env={"HF_HUB_CACHE": str(tmp_path / "hf")})
    assert listing.returncode == 0, listing.stderr
    rows = {line.split("│")[1].strip(): line.split("│")[4].strip() for line in listing.stdout.splitlines() if line.startswith("│")}
    assert rows == {"timm/efficientnet_lite0": "no", "timm/tf_efficientnet_lite0": "yes"}
