"""What every named backbone shares: a Classifier that keeps the backbone and the head apart (so
`--freeze backbone` caches pooled features and trains the head alone), the two heads, partial loading of
pretrained state dicts, the layouts of starting weights that need other options than the defaults, and the
mapping from a weights' mean/std to dermcli's preprocessing names."""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from dermcli.core.errors import DermcliError
from dermcli.models.checkpoint import torch_load

HEADS = ("linear", "card")
# mean, std (on [0, 1] RGB) of the named preprocessing presets that take them
NORMALISATIONS = {"imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)), "inception": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))}


def card_head(num_features: int, num_outputs: int) -> nn.Sequential:
    """The binary card's head on pooled features: BN, dropout, 512, BN, dropout, 256, dropout, output."""
    return nn.Sequential(
        nn.BatchNorm1d(num_features), nn.Dropout(0.5),
        nn.Linear(num_features, 512), nn.ReLU(inplace=True), nn.BatchNorm1d(512), nn.Dropout(0.5),
        nn.Linear(512, 256), nn.ReLU(inplace=True), nn.Dropout(0.3),
        nn.Linear(256, num_outputs),
    )


def make_head(kind: str, num_features: int, num_outputs: int) -> nn.Module:
    if kind not in HEADS:
        raise DermcliError(f"--head {kind!r} is not one of {', '.join(HEADS)}")
    return card_head(num_features, num_outputs) if kind == "card" else nn.Linear(num_features, num_outputs)


class Classifier(nn.Module):
    """backbone (images -> pooled features) followed by head (features -> outputs)."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def split_classifier(model: Classifier, freeze: str, **tracer_options):
    """--freeze for a Classifier: `none` trains everything; `backbone` the head alone, on cached pooled features;
    a module path of the backbone (`layer3`, `features.4`, `encoder.layers.encoder_layer_5`) freezes the
    backbone up to and including that module, whose outputs are then cached, and trains the rest."""
    if freeze == "none":
        return nn.Identity(), model
    if freeze == "backbone":
        return model.backbone, model.head
    prefix, suffix = split_at(model.backbone, freeze, **tracer_options)
    return prefix, nn.Sequential(suffix, model.head)


def split_at(backbone: nn.Module, point: str, **tracer_options):
    """(prefix, suffix) graph modules with suffix(prefix(x)) == backbone(x), cut after the last operation
    inside module `point`; they share the backbone's parameters. Traced with torch.fx (torchvision's node
    naming), so it works for any architecture fx can trace; a cut that later layers bypass (inside a residual
    block) is refused. `tracer_options` go to torchvision's NodePathTracer (timm's untraceable layers, say)."""
    import torch.fx as fx
    from torchvision.models.feature_extraction import NodePathTracer

    training = backbone.training
    tracer = NodePathTracer(**tracer_options)
    try:
        graph = tracer.trace(backbone.eval())
    except Exception as e:  # fx cannot follow every Python forward
        raise DermcliError(f"--freeze {point}: this model cannot be split at a module ({type(e).__name__}); use none or backbone") from None
    finally:
        backbone.train(training)
    nodes, names = list(graph.nodes), tracer.node_to_qualname
    inside = [i for i, n in enumerate(nodes) if names.get(n) == point or names.get(n, "").startswith(point + ".")]
    if not inside:
        points = [name for name, _ in backbone.named_children()]
        raise DermcliError(f"--freeze {point!r}: no such module in the backbone (top-level modules: {', '.join(points[:12])}; "
                           "a deeper one as e.g. features.4)")
    cut = nodes[inside[-1]]
    before = set(nodes[:inside[-1] + 1])
    prefix, suffix = fx.Graph(), fx.Graph()
    copied: dict = {}
    for n in nodes[:inside[-1] + 1]:
        copied[n] = prefix.node_copy(n, copied.__getitem__)
    prefix.output(copied[cut])
    copied = {cut: suffix.placeholder("features")}
    for n in nodes[inside[-1] + 1:]:
        for used in n.all_input_nodes:
            if used in before and used not in copied:
                if used.op != "get_attr":  # a constant or parameter read before the cut may be read again
                    raise DermcliError(f"--freeze {point}: later layers also use {names.get(used, used.name)}, so the model cannot be cut "
                                       "there; choose the end of a stage (e.g. layer3, features.4)")
                copied[used] = suffix.node_copy(used, copied.__getitem__)
        copied[n] = suffix.node_copy(n, copied.__getitem__)
    return fx.GraphModule(backbone, prefix), fx.GraphModule(backbone, suffix)


def load_partial(model: nn.Module, state: dict, source: str, prefix: str = "") -> tuple[list[str], list[str]]:
    """Copy every tensor of `state` (its keys with `prefix` put in front) whose key exists in `model`, never
    into the head. Returns (initialised top-level modules, modules left random); refuses when nothing
    matches or a matching key has another shape."""
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DermcliError(f"{source}: not a state dict of tensors")
    own = model.state_dict()
    usable = {prefix + k: v for k, v in state.items() if prefix + k in own and not (prefix + k).startswith(("fc.", "head."))}
    wrong = [k for k, v in usable.items() if v.shape != own[k].shape]
    if wrong:
        raise DermcliError(f"{source}: shape of {wrong[0]} is {tuple(usable[wrong[0]].shape)}, model expects {tuple(own[wrong[0]].shape)}")
    if not usable:
        raise DermcliError(f"{source}: no tensor matches the model's keys")
    model.load_state_dict(usable, strict=False)
    # BatchNorm's num_batches_tracked is a counter, not a weight: converted files often lack it.
    learned = [k for k in own if not k.endswith("num_batches_tracked")]
    depth = 2 if prefix else 1  # name modules below the backbone wrapper
    top = list(dict.fromkeys(".".join(k.split(".")[:min(depth, k.count("."))]) for k in learned))
    done = [m for m in top if all(k in usable for k in learned if k.startswith(m + "."))]
    return done, [m for m in top if m not in done]


@dataclass(frozen=True)
class Layout:
    """Starting weights recognised by their keys and statistics, and the options their training used."""

    name: str
    options: dict[str, str]  # e.g. {"preprocessing": "caffe", "strides": "v1"}
    certain: bool  # True: other options train a wrong model (refused); False: the file may be another's (a warning)
    matches: Callable[[dict], bool]


def _caffe_resnet(state: dict) -> bool:
    # torchvision's ResNet key names. Caffe's 0-255 inputs put the stem's BatchNorm variances in the thousands (the
    # Keras file's median: 3400); inputs scaled to about [-2, 2] put them in single digits.
    var = state.get("bn1.running_var")
    return "layer1.0.conv1.weight" in state and var is not None and float(var.float().median()) > 100


def _efficientnet_lite(state: dict) -> bool:
    # timm's key names; Lite has no squeeze-excitation, and its 5x5 depthwise convs tell it from MobileNetV2.
    return "conv_stem.weight" in state and not any(".se." in k for k in state) and any(
        k.endswith("conv_dw.weight") and v.shape[-1] == 5 for k, v in state.items())


LAYOUTS = (
    Layout("a ResNet converted from Keras/Caffe (its stem's BatchNorm statistics are those of 0-255 inputs; v1 strides)",
           {"preprocessing": "caffe", "strides": "v1"}, True, _caffe_resnet),
    Layout("an EfficientNet-Lite in timm's key names, as Google's TensorFlow weights for timm/tf_efficientnet_lite* (timm's own "
           "efficientnet_lite0 weights, if these are those, use ImageNet's mean/std)", {"preprocessing": "inception"}, False, _efficientnet_lite),
)


def recognise(state: dict) -> Layout | None:
    return next((layout for layout in LAYOUTS if layout.matches(state)), None)


def check_layout(state: dict, source: str, options: dict, log) -> None:
    """Refuse starting weights whose recognised layout was trained with other options than the run's (warn where
    the recognition is not certain). Options missing from `options` are not compared."""
    layout = recognise(state)
    differ = [k for k, v in layout.options.items() if options.get(k, v) != v] if layout else []
    if differ:
        message = (f"{source} is {layout.name}: train with {' '.join(f'--{k} {v}' for k, v in layout.options.items())} "
                   f"(this run: {', '.join(f'--{k} {options[k]}' for k in differ)})")
        if layout.certain:
            raise DermcliError(message)
        log(f"warning: {message}")


def init_from_file(model: nn.Module, options: dict, log, prefix: str = "") -> None:
    """Start from the state dict at options["init"], checked against the run's options (check_layout)."""

    path = str(options["init"])
    state = torch_load(Path(path))
    done, random = load_partial(model, state, path, prefix)  # first: it refuses what is not a state dict
    check_layout(state, path, options, log)
    log(f"initialised from {path}: {', '.join(done)}; random: {', '.join(random)}")


def preprocessing_for(mean, std, source: str) -> str:
    """dermcli's preprocessing name for a weights' normalisation."""
    for name, (m, s) in NORMALISATIONS.items():
        if all(abs(a - b) < 1e-3 for a, b in zip((*mean, *std), (*m, *s))):
            return name
    raise DermcliError(f"{source}: normalisation mean {tuple(mean)}, std {tuple(std)} is not one dermcli knows ({', '.join(NORMALISATIONS)})")
