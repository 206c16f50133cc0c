"""The valid range of every numeric option, in one place.

The CLI builds each option's help text and its check from this table, and the plain functions
(TrainConfig.resolved, evaluate, predict) check with it too, so the rule, the `--help` text and what
the code accepts cannot drift apart. NaN fails every range check; so do infinities (every range is finite).
"""

import math
from dataclasses import dataclass

from dermcli.core.errors import DermcliError

SEED_MAX = 2**32 - 1  # numpy's and torch's seeds are unsigned 32/64-bit; 32 keeps both happy


@dataclass(frozen=True)
class Range:
    low: float
    high: float
    low_open: bool = False  # True: low itself is refused
    high_open: bool = False

    def contains(self, value) -> bool:
        if isinstance(value, float) and not math.isfinite(value):
            return False
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def __str__(self) -> str:
        return f"{'(' if self.low_open else '['}{_number(self.low)}, {_number(self.high)}{')' if self.high_open else ']'}"


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


RANGES: dict[str, Range] = {
    # train
    "epochs": Range(1, 100_000),
    "batch-size": Range(2, 65_536),  # a batch of one breaks BatchNorm in training
    "lr": Range(0, 10, low_open=True),
    "weight-decay": Range(0, 10),
    "patience": Range(1, 100_000),
    "label-smoothing": Range(0, 1, high_open=True),  # 1 would make every target uniform
    "ema": Range(0, 1, high_open=True),  # 0 = off; 1 would never move from the start
    "seed": Range(0, SEED_MAX),
    "split-seed": Range(0, SEED_MAX),
    "target-sensitivity": Range(0, 1, low_open=True, high_open=True),
    "folds": Range(2, 100),
    "warmup-epochs": Range(0, 100_000),
    "lr-warmup": Range(0, 100_000),
    "crop-scale": Range(0.05, 1),  # a share of the image's area
    "finetune-lr": Range(0, 10, low_open=True),
    "input-size": Range(16, 1024),
    "distill-weight": Range(0, 1),  # share of the teacher term in the loss; 1 ignores the labels
    "distill-temperature": Range(0, 100, low_open=True),
    # eval, predict; a key "command:option" is the range of that command's own --option
    "eval:batch-size": Range(1, 65_536),
    "threshold": Range(0, 1),  # on a probability; 0 calls every image malignant, 1 only certain ones
    # serve
    "port": Range(0, 65_535),  # 0: a free port, chosen by the system
    "max-upload-mb": Range(0, 2_000, low_open=True),
    "max-images": Range(1, 1_000),
    "queue": Range(1, 10_000),
    "upload-timeout": Range(0, 3_600, low_open=True),
}


def check(name: str, value):
    """Return `value` if it lies in the range RANGES[name], else raise a one-line DermcliError naming the option."""
    if value is None:
        return value
    allowed = RANGES[name]
    if not allowed.contains(value):
        raise DermcliError(f"--{name.split(':')[-1]} {value}: must be in {allowed}")
    return value


def help_with_range(name: str, text: str) -> str:
    return f"{text} Range {RANGES[name]}."
