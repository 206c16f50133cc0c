"""`dermcli explain` and `predict --explain`: one PNG per image with the image as the model saw it, the map
over it and the class probabilities, titled with the model, the verdict and the research-use line."""

from pathlib import Path

import numpy as np

from dermcli.data.images import ImageError, load_rgb
from dermcli.errors import DermcliError
from dermcli.explain import explanation_map
from dermcli.plots import axes_figure, save_png
from dermcli.predict import DISCLAIMER, collect_images, default_weights, expected_backend, to_predictions

DISPLAY = 224  # pixels the image is drawn at: a 28x28 input is enlarged with visible pixels


def target_index(target: str | None, meta: dict, probs: np.ndarray) -> tuple[int, str]:
    """The output to explain and its name: --target, else the predicted class (the malignant logit of a binary model)."""
    names = meta["class_names"]
    if meta["task"] == "binary":
        if target not in (None, "malignant"):
            raise DermcliError(f"--target {target!r}: a binary model has one output, the malignant score; use --target malignant")
        return 0, "malignant"
    if target is None:
        return int(probs.argmax()), names[int(probs.argmax())]
    if target not in names:
        raise DermcliError(f"--target {target!r} is not one of {', '.join(names)}")
    return names.index(target), target


def figure(path: Path, image: np.ndarray, heat: np.ndarray, prediction, title: str, note: str) -> Path:
    from matplotlib import colormaps

    fig, (seen_ax, map_ax, bar_ax) = axes_figure(3, (13, 4.8), top=0.8, bottom=0.1, left=0.03, right=0.98, wspace=0.25)
    repeat = max(1, DISPLAY // image.shape[0])
    shown = np.kron(image, np.ones((repeat, repeat, 1), dtype=np.uint8))
    seen_ax.imshow(shown, interpolation="nearest")
    seen_ax.set_title(f"as the model saw it ({image.shape[0]}x{image.shape[1]})", fontsize=9)
    heat_rgb = colormaps["jet"](np.kron(heat, np.ones((repeat, repeat))))[..., :3]
    map_ax.imshow((0.55 * shown / 255 + 0.45 * heat_rgb).clip(0, 1), interpolation="nearest")
    map_ax.set_title(note, fontsize=9)
    for ax in (seen_ax, map_ax):
        ax.set_axis_off()
    names = list(prediction.probabilities)
    values = [prediction.probabilities[n] for n in names]
    bar_ax.barh(names, values, color=["tab:red" if n.lower() == prediction.label.lower() else "tab:gray" for n in names])
    bar_ax.set_xlim(0, 1)
    bar_ax.invert_yaxis()
    bar_ax.set_xlabel("probability (calibrated)")
    fig.suptitle(title, fontsize=11)
    fig.text(0.5, 0.02, DISCLAIMER, ha="center", fontsize=8, style="italic")
    return save_png(fig, path)


def explain(inputs: list[str], out: Path, weights: Path | None = None, model: str | None = None, method: str = "gradcam",
            target: str | None = None, layer: str | None = None, track=None) -> tuple[list[Path], list[tuple[str, str]]]:
    """Write OUT/<image>_<method>.png for every readable image; returns the PNGs and (input, problem) pairs."""
    import torch

    from dermcli.checkpoint import load_model
    from dermcli.explain import METHODS
    from dermcli.io import ensure_writable_dir
    from dermcli.metrics import probabilities
    from dermcli.preprocess import normalize

    if method not in METHODS:
        raise DermcliError(f"--method {method!r} is not one of {', '.join(METHODS)}")
    paths, problems = collect_images(inputs)
    if not paths and problems:
        return [], problems
    weights = Path(weights) if weights else default_weights(model)
    net, meta = load_model(weights, expect_backend=expected_backend(model))
    out = ensure_writable_dir(Path(out))
    written, used = [], set()
    for path in track(paths, "explaining", len(paths)) if track and len(paths) > 1 else paths:
        try:
            image = load_rgb(path, meta["input_size"])
        except ImageError as e:
            problems.append((str(path), str(e).removeprefix(f"{path}: ")))
            continue
        x = torch.from_numpy(normalize(image[None], meta["preprocessing"]))
        with torch.no_grad():
            probs = probabilities(net(x).numpy(), meta["temperature"])
        prediction = to_predictions([path], probs, meta, meta["threshold"])[0]
        index, name = target_index(target, meta, probs[0])
        heat, explained, grid = explanation_map(net, x, method, index, layer)
        title = (f"{meta['backend']}: {prediction.label} ({prediction.confidence:.0%}), malignant score {prediction.malignant_score:.3f}"
                 f" — {Path(path).name}")
        note = f"{method} for {name}, layer {explained} ({grid[0]}x{grid[1]} map)"
        stem = f"{Path(path).stem}_{method}"
        while stem in used:  # same file name in two folders
            stem += "_"
        used.add(stem)
        written.append(figure(out / f"{stem}.png", image, heat, prediction, title, note))
    return written, problems
