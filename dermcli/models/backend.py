"""What every architecture provides (Backend), and the registry that names them."""

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
