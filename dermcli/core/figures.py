"""matplotlib figures (Agg, no display) with fixed margins, saved as PNG atomically; matplotlib is imported
only when a figure is drawn, so no command pays for it at start-up."""

import io
from pathlib import Path

from dermcli.core.files import atomic_path


def axes_figure(ncols: int = 1, size: tuple[float, float] | None = None, **margins):
    """A figure of `ncols` axes with fixed margins: cheaper than tight_layout, which draws everything once
    more only to measure it (a third of the plotting time)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=size or (6 * ncols, 5))
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    fig.subplots_adjust(**{"left": 0.1 if ncols == 1 else 0.07, "right": 0.97, "bottom": 0.11, "top": 0.87, "wspace": 0.3, **margins})
    return fig, axes


DPI = 110


def save_png(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return path


def png_bytes(fig) -> bytes:
    """The figure as PNG bytes, in memory: `dermcli serve` writes no files."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()
