"""Every torchvision classification model by name, found through torchvision's own registries
(`list_models`, `get_model`, `get_model_weights`), not a hand-kept list.

The network is wrapped as Classifier(backbone, head): torchvision's last linear layer becomes an
identity (the backbone then ends in pooled features) and dermcli's head (`--head linear` or `card`)
follows. Input size and normalisation default to those of the model's DEFAULT weights.
"""

from dataclasses import dataclass, field

from torch import nn

from dermcli.core.errors import DermcliError
from dermcli.models.backend import Backend
from dermcli.models.backend import names as card_names
from dermcli.models.common import Classifier, init_from_file, load_partial, make_head, preprocessing_for, split_classifier

# Constructor arguments some families need: no auxiliary classifiers; a ViT's or MaxViT's size is fixed when built.
BUILD_ARGUMENTS = {"inception_v3": lambda size: {"aux_logits": False, "init_weights": False},
                   "googlenet": lambda size: {"aux_logits": False, "init_weights": False},
                   "vit_": lambda size: {"image_size": size}, "maxvit_": lambda size: {"input_size": (size, size)}}


def names() -> list[str]:
    """torchvision's classification models, less the names the model cards' backends own (resnet50)."""
    import torchvision
    from torchvision.models import list_models

    return [n for n in list_models(module=torchvision.models) if n not in card_names()]


def _without_classifier(model: nn.Module) -> int:
    """Replace the model's last linear layer by an identity, in place; return its input width."""
    if hasattr(model, "classifier") and isinstance(model.classifier, nn.Sequential) and not any(
            isinstance(m, nn.Linear) for m in model.classifier.modules()):  # SqueezeNet: a 1x1 conv classifier
        width = next(m for m in model.classifier.modules() if isinstance(m, nn.Conv2d)).in_channels
        model.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        return width
    path, last = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)][-1]
    parent = model.get_submodule(path.rpartition(".")[0]) if "." in path else model
    setattr(parent, path.rpartition(".")[2], nn.Identity())
    return last.in_features


@dataclass(frozen=True)
class TorchvisionBackend(Backend):
    freeze_choices: tuple[str, ...] = ("none", "backbone")  # or any module path of the backbone (common.split_at)
    freeze_points: bool = True
    default_options: dict = field(default_factory=lambda: {"pretrained": True, "init": None, "head": "linear", "input_size": 224})

    def build(self, num_outputs: int, options: dict):
        from torchvision.models import get_model

        size = options.get("input_size") or self.input_size
        extra = next((make(size) for prefix, make in BUILD_ARGUMENTS.items() if self.name.startswith(prefix)), {})
        try:
            model = get_model(self.name, weights=None, **extra)
        except (ValueError, TypeError, RuntimeError) as e:
            raise DermcliError(f"cannot build {self.name} at input size {size}: {e}") from None
        width = _without_classifier(model)
        return Classifier(model, make_head(options.get("head") or "linear", width, num_outputs))

    def initialise(self, model, options: dict, log) -> None:
        if options.get("init"):
            init_from_file(model, options, log, prefix="backbone.")
        elif options.get("pretrained"):
            weights = _default_weights(self.name)
            try:
                state = weights.get_state_dict(progress=False, weights_only=True)
            except Exception as e:  # network, cache and format failures all mean "cannot have them here"
                raise DermcliError(f"cannot get ImageNet weights from {weights.url} ({type(e).__name__}: {str(e)[:120]}); "
                                   "use --no-pretrained, or --init PATH to a local torchvision-format state dict") from None
            done, random = load_partial(model, state, str(weights), prefix="backbone.")
            log(f"initialised from torchvision {weights}: {', '.join(done)}; random: {', '.join(random)}")
        else:
            log("random initialisation (no pretrained weights)")

    def split_frozen(self, model, freeze: str):
        return split_classifier(model, freeze)


def _default_weights(name: str):
    from torchvision.models import get_model_weights

    return get_model_weights(name).DEFAULT


def backend(name: str) -> TorchvisionBackend:
    """The backend of torchvision model `name`; an unknown name is a one-line error with close matches."""
    import difflib

    known = names()
    if name not in known:
        close = difflib.get_close_matches(name, known + ["cnn", "resnet50"], n=4, cutoff=0.6) if name else []
        raise DermcliError(f"unknown model {name!r}" + (f" (did you mean {', '.join(close)}?)" if close else "")
                           + ": see `dermcli models` (timm models as timm/NAME)")
    weights = _default_weights(name)
    transforms = weights.transforms()
    return TorchvisionBackend(
        name=name, default_task="multiclass", input_size=int(transforms.crop_size[0]),
        default_preprocessing=preprocessing_for(transforms.mean, transforms.std, str(weights)),
        description=f"torchvision {name} ({weights.meta.get('num_params', 0) / 1e6:.1f}M parameters with its ImageNet head), "
                    "its last linear layer replaced by dermcli's head.")


def catalogue() -> list[dict]:
    """Every torchvision classification model: name, parameters (with ImageNet's 1000-class head), input
    size, and whether its DEFAULT weights are already in $TORCH_HOME (no download needed)."""
    from pathlib import Path

    from torch.hub import get_dir

    rows = []
    for name in names():
        weights = _default_weights(name)
        cached = (Path(get_dir()) / "checkpoints" / Path(weights.url).name).is_file()
        rows.append({"model": name, "parameters": weights.meta.get("num_params"), "input_size": int(weights.transforms().crop_size[0]),
                     "cached": cached})
    return rows
