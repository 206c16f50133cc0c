import pytest
import torch

from dermcli.core.errors import DermcliError
from dermcli.models.backend import names
from dermcli.models.common import load_partial
from dermcli.models.registry import get_backend


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def test_cnn_shape_and_size():
    model = get_backend("cnn").build(7, {}).eval()
    assert model(torch.rand(4, 3, 28, 28)).shape == (4, 7)
    # convs 3-32, 32-64, 64-64, 64-128, 128-128, 128-256, 256-256 (+ 3 BN), then 256-256-128-64-32 (+ BN) and 32-7
    convs = sum(9 * i * o + o for i, o in [(3, 32), (32, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256)])
    dense = sum(i * o + o + 2 * o for i, o in [(256, 256), (256, 128), (128, 64), (64, 32)]) + 32 * 7 + 7
    assert n_params(model) == convs + 2 * (32 + 64 + 128) + dense


@pytest.mark.parametrize("strides", ["v1.5", "v1"])
def test_resnet50_with_card_head(strides):
    model = get_backend("resnet50").build(1, {"strides": strides}).eval()
    assert model(torch.rand(2, 3, 224, 224)).shape == (2, 1)
    assert 24.6e6 < n_params(model) < 24.8e6
    first = model.layer2[0]
    assert (first.conv1.stride, first.conv2.stride) == (((2, 2), (1, 1)) if strides == "v1" else ((1, 1), (2, 2)))


@pytest.mark.parametrize("freeze", ["none", "layer3", "backbone"])
def test_frozen_prefix_then_rest_equals_the_whole_model(freeze):
    backend = get_backend("resnet50")
    model = backend.build(1, {}).eval()
    frozen, rest = backend.split_frozen(model, freeze)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(rest(frozen(x)), model(x), atol=1e-5)


def test_partial_init_reports_and_refuses():
    model = get_backend("resnet50").build(1, {})
    source = get_backend("resnet50").build(1, {})
    stem_and_layer1 = {k: v for k, v in source.state_dict().items() if k.split(".")[0] in ("conv1", "bn1", "layer1")}
    done, random = load_partial(model, stem_and_layer1, "f")
    assert done == ["conv1", "bn1", "layer1"] and random == ["layer2", "layer3", "layer4", "fc"]
    assert torch.equal(model.layer1[0].conv1.weight, source.layer1[0].conv1.weight)
    with pytest.raises(DermcliError, match="no tensor matches"):
        load_partial(model, {"encoder.weight": torch.zeros(3)}, "f")
    with pytest.raises(DermcliError, match="shape of conv1.weight"):
        load_partial(model, {"conv1.weight": torch.zeros(64, 3, 3, 3)}, "f")


def test_registry_knows_the_cards_backends_and_refuses_unknown_names():
    assert set(names()) == {"cnn", "resnet50", "ensemble"}
    with pytest.raises(DermcliError, match="unknown model 'vit'"):
        get_backend("vit")


@pytest.mark.parametrize("name, outputs", [("cnn", 7), ("resnet50", 1)])
def test_the_cards_architecture_paragraph_gives_the_built_models_parameter_count(name, outputs):
    import re

    from dermcli.models.registry import describe, get_backend

    stated = float(re.search(r"([\d.]+)M parameters", describe(name)).group(1))
    built = sum(p.numel() for p in get_backend(name).build(outputs, {}).parameters()) / 1e6
    assert abs(stated - built) < 0.05, (stated, built)
