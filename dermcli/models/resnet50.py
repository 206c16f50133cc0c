"""torchvision ResNet50 with the binary card's classification head.

State-dict keys are torchvision's (plus `fc.*` for the head), so any torchvision-format
ResNet50 state dict initialises the backbone.
"""

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from dermcli.errors import DermcliError
from dermcli.models import Backend, register

FREEZE_CHOICES = ("none", "layer3", "backbone")
STRIDES = ("v1.5", "v1")


def card_head(num_outputs: int) -> nn.Sequential:
    return nn.Sequential(
        nn.BatchNorm1d(2048), nn.Dropout(0.5),
        nn.Linear(2048, 512), nn.ReLU(inplace=True), nn.BatchNorm1d(512), nn.Dropout(0.5),
        nn.Linear(512, 256), nn.ReLU(inplace=True), nn.Dropout(0.3),
        nn.Linear(256, num_outputs),
    )


def build_resnet50(num_outputs: int = 1, strides: str = "v1.5") -> nn.Module:
    from torchvision.models import resnet50

    model = resnet50(weights=None)
    if strides == "v1":
        # Original (Caffe/Keras) ResNet: the stride-2 of each stage's first block sits on its 1x1 conv.
        for layer in (model.layer2, model.layer3, model.layer4):
            layer[0].conv1.stride, layer[0].conv2.stride = (2, 2), (1, 1)
    model.fc = card_head(num_outputs)
    return model


def load_partial(model: nn.Module, state: dict, source: str) -> tuple[list[str], list[str]]:
    """Copy every tensor of `state` whose key and shape match into `model` (never `fc`).

    Returns (initialised top-level modules, modules left random). Refuses when nothing matches
    or when a matching key has another shape.
    """
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DermcliError(f"{source}: not a state dict of tensors")
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and not k.startswith("fc.")}
    wrong = [k for k, v in usable.items() if v.shape != own[k].shape]
    if wrong:
        raise DermcliError(f"{source}: shape of {wrong[0]} is {tuple(usable[wrong[0]].shape)}, model expects {tuple(own[wrong[0]].shape)}")
    if not usable:
        raise DermcliError(f"{source}: no tensor matches a torchvision ResNet50 key")
    model.load_state_dict(usable, strict=False)
    # BatchNorm's num_batches_tracked is a counter, not a weight: files converted from Keras lack it.
    learned = [k for k in own if not k.endswith("num_batches_tracked")]
    top = list(dict.fromkeys(k.split(".")[0] for k in learned))
    done = [m for m in top if all(k in usable for k in learned if k.split(".")[0] == m)]
    return done, [m for m in top if m not in done]


def _imagenet_state_dict() -> dict:
    from torchvision.models import ResNet50_Weights

    weights = ResNet50_Weights.IMAGENET1K_V2
    try:
        return weights.get_state_dict(progress=False, weights_only=True)
    except Exception as e:  # network, cache and format failures all mean "cannot have them here"
        raise DermcliError(
            f"cannot get ImageNet weights from {weights.url} ({type(e).__name__}: {str(e)[:120]}); "
            "use --no-pretrained, or --init PATH to a local torchvision-format state dict"
        ) from None


@dataclass(frozen=True)
class ResNet50Backend(Backend):
    freeze_choices: tuple[str, ...] = FREEZE_CHOICES
    default_options: dict = field(default_factory=lambda: {"pretrained": True, "init": None, "strides": "v1.5"})

    def build(self, num_outputs: int, options: dict):
        return build_resnet50(num_outputs, options.get("strides", "v1.5"))

    def initialise(self, model, options: dict, log) -> None:
        if options.get("init"):
            from dermcli.checkpoint import torch_load

            source = str(options["init"])
            done, random = load_partial(model, torch_load(Path(source)), source)
            log(f"initialised from {source}: {', '.join(done)}; random: {', '.join(random)}")
        elif options.get("pretrained"):
            load_partial(model, _imagenet_state_dict(), "ImageNet weights")
            log("initialised from torchvision ResNet50_Weights.IMAGENET1K_V2; random: fc (head)")
        else:
            log("random initialisation (no pretrained weights)")

    def split_frozen(self, model, freeze: str):
        stem = [model.conv1, model.bn1, model.relu, model.maxpool, model.layer1, model.layer2, model.layer3]
        if freeze == "layer3":
            return nn.Sequential(*stem), nn.Sequential(model.layer4, model.avgpool, nn.Flatten(), model.fc)
        if freeze == "backbone":
            return nn.Sequential(*stem, model.layer4, model.avgpool, nn.Flatten()), model.fc
        return nn.Identity(), model


register(ResNet50Backend(
    name="resnet50", default_task="binary", input_size=224, default_preprocessing="imagenet",
    description="torchvision ResNet50 at 224x224 with the binary card's head: global average pool, BN(2048), dropout 0.5, "
                "linear 512 + ReLU, BN(512), dropout 0.5, linear 256 + ReLU, dropout 0.3, linear output (sigmoid for binary). "
                "24.7M parameters.",
))
