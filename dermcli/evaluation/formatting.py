"""Figures as report text: three decimals, and a dash where a figure is undefined on the data."""

import numpy as np


def undefined(value: float | None) -> bool:
    """A figure undefined on the data: NaN, or None as metrics.json stores it."""
    return value is None or np.isnan(value)


def num(value: float | None, spec: str = ".3f") -> str:
    return "—" if undefined(value) else format(value, spec)


def fmt(value: float | None, ci: tuple[float, float] | None = None) -> str:
    """value (low–high), or "—" where undefined."""
    return num(value) + (f" ({ci[0]:.3f}–{ci[1]:.3f})" if ci and not undefined(value) and not undefined(ci[0]) else "")


def overlap_sentence(info: dict) -> str:
    """What an eval left out under --allow-overlap (eval_info's "overlap"), or nothing."""
    overlap = {k: v for k, v in info.get("overlap", {}).items() if k != "folder"}
    if not overlap:
        return ""
    counts = ", ".join(f"{n} {part}" for part, n in overlap.items())
    return (f" The set also held {sum(overlap.values())} of the model's own images ({counts}): they are left out of every "
            f"figure here and reported apart in `{info['overlap']['folder']}/`.")


def ood_pass_rate(info: dict) -> float:
    """The share of validation images under a checkpoint's (or eval's) unusual-image threshold: 0.95 for those
    written before the share was recorded, when the threshold was always the 95th percentile."""
    return info.get("ood_pass_rate", 0.95)
