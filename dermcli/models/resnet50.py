"""torchvision ResNet50 with the binary card's classification head.

State-dict keys are torchvision's (plus `fc.*` for the head), so any torchvision-format
ResNet50 state dict initialises the backbone.
"""

from dataclasses import dataclass, field

from torch import nn

from dermcli.core.errors import DermcliError
from dermcli.models import descriptions
from dermcli.models.backend import Backend, register
from dermcli.models.common import init_from_file, load_partial, make_head

FREEZE_CHOICES = ("none", "layer3", "backbone")
STRIDES = ("v1.5", "v1")


def build_resnet50(num_outputs: int = 1, strides: str = "v1.5", head: str = "card") -> nn.Module:
    from torchvision.models import resnet50

    model = resnet50(weights=None)
    if strides == "v1":
        # Original (Caffe/Keras) ResNet: the stride-2 of each stage's first block sits on its 1x1 conv.
        for layer in (model.layer2, model.layer3, model.layer4):
            layer[0].conv1.stride, layer[0].conv2.stride = (2, 2), (1, 1)
    model.fc = make_head(head, 2048, num_outputs)
    return model


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
    default_options: dict = field(default_factory=lambda: {"pretrained": True, "init": None, "strides": "v1.5", "head": "card",
                                                           "input_size": 224})

    def build(self, num_outputs: int, options: dict):
        return build_resnet50(num_outputs, options.get("strides", "v1.5"), options.get("head") or "card")

    def initialise(self, model, options: dict, log) -> None:
        if options.get("init"):
            init_from_file(model, options, log)
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
    description=descriptions.RESNET50,
))
