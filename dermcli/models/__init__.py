"""Model backends by name: the model cards' two (`cnn`, `resnet50`: one module each, registered), every
torchvision classification model by its torchvision name (models/torchvision_zoo.py) and every timm model
as `timm/NAME` (models/timm_zoo.py).

To add a fixed architecture: write dermcli/models/NAME.py with a Backend subclass, and list NAME in _MODULES.
"""

import importlib
from dataclasses import dataclass, field


_MODULES = ("cnn", "resnet50", "ensemble")
_REGISTRY: dict[str, "Backend"] = {}

PREPROCESSING = ("unit", "imagenet", "caffe", "inception")


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
    trainable: bool = True  # False: made another way (an ensemble by `dermcli ensemble`)
    freeze_points: bool = False  # True: --freeze also takes a module path of the backbone

    def build(self, num_outputs: int, options: dict):
        """The architecture with random weights (no downloads): used to load checkpoints."""
        raise NotImplementedError

    def initialise(self, model, options: dict, log) -> None:
        """Load starting weights for training (e.g. ImageNet); `log` takes one-line messages. `options`: the run's
        model options and its `preprocessing`, which an --init file's recognised layout is checked against."""

    def split_frozen(self, model, freeze: str):
        """Return (frozen_prefix, trainable_rest) sharing `model`'s modules, for `--freeze`."""
        raise NotImplementedError


def register(backend: Backend) -> Backend:
    _REGISTRY[backend.name] = backend
    return backend


def names() -> tuple[str, ...]:
    return _MODULES


def get_backend(name: str) -> Backend:
    if name not in _REGISTRY:
        if name in _MODULES:
            importlib.import_module(f"dermcli.models.{name}")
        elif name.startswith("timm/"):
            from dermcli.models.timm_zoo import backend

            register(backend(name))
        else:
            from dermcli.models.torchvision_zoo import backend

            register(backend(name))
    return _REGISTRY[name]
