"""What every named backbone shares: a Classifier that keeps the backbone and the head apart (so
`--freeze backbone` caches pooled features and trains the head alone), the two heads, partial loading of
pretrained state dicts, and the mapping from a weights' mean/std to dermcli's preprocessing names."""

from pathlib import Path

import torch
from torch import nn

from dermcli.errors import DermcliError

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


def split_classifier(model: Classifier, freeze: str):
    """--freeze for a Classifier: `backbone` trains the head alone on cached features; `none` trains everything."""
    return (model.backbone, model.head) if freeze == "backbone" else (nn.Identity(), model)


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


def init_from_file(model: nn.Module, path: str, log, prefix: str = "") -> None:
    from dermcli.checkpoint import torch_load

    done, random = load_partial(model, torch_load(Path(path)), path, prefix)
    log(f"initialised from {path}: {', '.join(done)}; random: {', '.join(random)}")


def preprocessing_for(mean, std, source: str) -> str:
    """dermcli's preprocessing name for a weights' normalisation."""
    for name, (m, s) in NORMALISATIONS.items():
        if all(abs(a - b) < 1e-3 for a, b in zip((*mean, *std), (*m, *s))):
            return name
    raise DermcliError(f"{source}: normalisation mean {tuple(mean)}, std {tuple(std)} is not one dermcli knows ({', '.join(NORMALISATIONS)})")
