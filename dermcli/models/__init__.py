"""Model backends by name. A backend is one module defining a `Backend` and calling `register`.

To add a backbone: write dermcli/models/NAME.py with a Backend subclass, and list NAME in _MODULES.
"""

import importlib
from dataclasses import dataclass, field

from dermcli.errors import DermcliError

_MODULES = ("cnn", "resnet50")
_REGISTRY: dict[str, "Backend"] = {}

PREPROCESSING = ("unit", "imagenet", "caffe")


@dataclass(frozen=True)
class Backend:
    """What the rest of dermcli needs to know about an architecture."""

    name: str
    default_task: str
    input_size: int
    default_preprocessing: str
    description: str = ""  # one paragraph for model cards
    freeze_choices: tuple[str, ...] = ("none",)
    default_options: dict = field(default_factory=dict)

    def build(self, num_outputs: int, options: dict):
        """The architecture with random weights (no downloads): used to load checkpoints."""
        raise NotImplementedError

    def initialise(self, model, options: dict, log) -> None:
        """Load starting weights for training (e.g. ImageNet); `log` takes one-line messages."""

    def split_frozen(self, model, freeze: str):
        """Return (frozen_prefix, trainable_rest) sharing `model`'s modules, for `--freeze`."""
        raise NotImplementedError


def register(backend: Backend) -> Backend:
    _REGISTRY[backend.name] = backend
    return backend


def names() -> tuple[str, ...]:
    return _MODULES


def get_backend(name: str) -> Backend:
    if name not in _MODULES:
        raise DermcliError(f"unknown model {name!r} (choose from {', '.join(_MODULES)})")
    if name not in _REGISTRY:
        importlib.import_module(f"dermcli.models.{name}")
    return _REGISTRY[name]
