"""Typer options made from declarations elsewhere: numeric ranges from core.options, and one option per field of a
config dataclass (training.config.TrainConfig), so each option is declared once."""

import inspect
from dataclasses import fields
from typing import Annotated, Optional

import typer

from dermcli.core.options import RANGES, check, help_with_range


def range_check(name: str, zero_allowed: bool = False):
    return lambda value: value if zero_allowed and value == 0 else check(name, value)


def ranged(name: str, text: str, zero_allowed: bool = False, **kwargs):
    """A numeric option whose help text and check both come from core.options.RANGES[name]; `zero_allowed`: 0 also
    passes (an option whose 0 means "the default")."""
    return typer.Option(help=help_with_range(name, text), callback=range_check(name, zero_allowed), **kwargs)


def config_options(cls) -> list[inspect.Parameter]:
    """One `--option` per field of a config dataclass, from the field's own declaration (help, default, type) and
    its range in core.options: options are declared once, in the dataclass. Each defaults to None, "not given",
    so that a flag overrides a --config file only when it is given."""
    params = []
    for f in fields(cls):
        kind = next(a for a in getattr(f.type, "__args__", (f.type,)) if a is not type(None))
        name, help_text = f.name.replace("_", "-"), f.metadata["help"]
        default = "" if f.default in ("", None) else f" Default: {'--' + name if f.default is True else '--no-' + name if f.default is False else f.default}."
        # a field whose default is 0 means "the default" by 0 (train --input-size: the model's own), as the dataclass takes it
        extra = {"callback": range_check(name, zero_allowed=type(f.default) in (int, float) and f.default == 0)} if name in RANGES else {}
        option = typer.Option(help=(help_with_range(name, help_text) if name in RANGES else help_text) + default, show_default=False, **extra)
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[Optional[kind], option]))
    return params


def field_option(cls, name: str, **kwargs):
    """A command's own option declared by a config dataclass's field (its help text), e.g. eval's --image-column."""
    return typer.Option(help=next(f.metadata["help"] for f in fields(cls) if f.name == name), **kwargs)


# Options that several commands share, declared once.
MODEL = typer.Option(help="lite0 (default: two EfficientNet-Lite0 at 224, 7-class), cnn (28x28, 7-class), cnn-distilled (the same CNN distilled from lite0) or resnet50 (binary): picks the shipped weights, or checks --weights.")
ENGINE = typer.Option(help="auto (ONNX Runtime if installed), onnx or torch.")
DEVICE = typer.Option(help="auto (CUDA, else Apple MPS, else CPU), cpu, cuda, cuda:N or mps.")
TTA = typer.Option(help="Test-time augmentation: none, flips (4 views) or dihedral (8); default: the checkpoint's, else none.")
WEIGHTS = typer.Option(help="Checkpoint; default: the shipped weights of --model.")
