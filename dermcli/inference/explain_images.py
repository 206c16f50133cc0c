"""`dermcli explain` and `predict --explain`: one PNG per image with the image as the model saw it, the map
over it and the class probabilities, titled with the model, the verdict, the views averaged and the research-use
line; and explanations.csv, what each figure shows, so a figure can be checked without reading its pixels."""

from pathlib import Path

import numpy as np

from dermcli.core.errors import DermcliError
from dermcli.core.figures import axes_figure, save_png
from dermcli.core.files import ensure_writable_dir, write_text
from dermcli.inference.explain import METHODS, view_averaged_map
from dermcli.inference.predict import (
    DISCLAIMER,
    Prediction,
    collect_images,
    default_tta,
    default_weights,
    expected_backend,
    input_resolution,
    prediction_row,
    readable,
    to_predictions,
)
from dermcli.inference.runners import TorchRunner
from dermcli.inference.tta import check_tta, predict_probabilities, tta_views
from dermcli.models.loading import load_model

DISPLAY = 224  # pixels the image is drawn at: a 28x28 input is enlarged with visible pixels


def target_index(target: str | None, meta: dict, prediction) -> tuple[int, str]:
    """The output to explain and its name: --target, else the predicted class (the malignant logit of a binary model)."""
    names = meta["class_names"]
    if meta["task"] == "binary":
        if target not in (None, "malignant"):
            raise DermcliError(f"--target {target!r}: a binary model has one output, the malignant score; use --target malignant")
        return 0, "malignant"
    target = target or prediction.label
    if target not in names:
        raise DermcliError(f"--target {target!r} is not one of {', '.join(names)}")
    return names.index(target), target


def draw_figure(image: np.ndarray, heat: np.ndarray, prediction, title: str, note: str):
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
    return fig


def explained_figure(runner: TorchRunner, image: np.ndarray, name: str, resampled: str | None, method: str = "gradcam",
                     target: str | None = None, layer: str | None = None, tta: str = "none", prediction: Prediction | None = None):
    """The figure of one decoded image named `name` (as the model saw it, the map over it, the probabilities) and
    its explanations.csv row. `prediction`: the one already shown for the image, else the runner's."""
    meta = runner.meta
    prediction = prediction or to_predictions([name], predict_probabilities(runner, image[None], tta), meta, meta["threshold"],
                                              resampled=[resampled])[0]
    index, target_name = target_index(target, meta, prediction)
    heat, explained, grid = view_averaged_map(runner.model, image, meta["preprocessing"], tta, method, index, layer)
    count = len(tta_views(image[None], tta))  # numpy views of the image: nothing is copied
    views = f"{count} views ({tta})" if count > 1 else "1 view"
    score = f", malignant score {prediction.malignant_score:.3f}" if prediction.malignant_score is not None else ""
    title = f"{meta['backend']}: {prediction.label} ({prediction.confidence:.1%}){score}, {views} — {Path(name).name}"
    note = f"{method} for {target_name}, layer {explained} ({grid[0]}x{grid[1]} map" + (f", mean of the {count} views)" if count > 1 else ")")
    row = {**prediction_row(prediction), "method": method, "target": target_name, "layer": explained, "views": views}
    return draw_figure(image, heat, prediction, title, note), row


def explain(inputs: list[str], out: Path, weights: Path | None = None, model: str | None = None, method: str = "gradcam",
            target: str | None = None, layer: str | None = None, track=None, tta: str | None = None,
            printed: list[Prediction] | None = None, native_resolution: bool = False,
            log=lambda msg: None) -> tuple[list[Path], list[tuple[str, str]]]:
    """Write OUT/<image>_<method>.png for every readable image and OUT/explanations.csv (what each figure shows);
    returns the PNGs and (input, problem) pairs. Probabilities and map are averaged over the --tta views (default:
    the checkpoint's, as `predict`), on the image as `predict` decodes it (`native_resolution` as there).
    `printed`: the predictions `predict` printed for `inputs`, shown as printed."""
    import pandas as pd

    if method not in METHODS:
        raise DermcliError(f"--method {method!r} is not one of {', '.join(METHODS)}")
    check_tta(tta)
    paths, problems = collect_images(inputs)
    if not paths and problems:
        return [], problems
    weights = Path(weights) if weights else default_weights(model)
    net, meta = load_model(weights, expect_backend=expected_backend(model))
    tta, runner, shown = default_tta(tta, meta), TorchRunner(net, meta), {p.image: p for p in printed or []}
    out = ensure_writable_dir(Path(out))
    resolution = input_resolution(meta, native_resolution, log, weights)
    written, rows, used = [], [], set()
    for path, image, note in readable(paths, meta["input_size"], resolution, problems, "explaining", track, log):
        fig, row = explained_figure(runner, image, path, note, method, target, layer, tta, shown.get(str(path)))
        stem = f"{Path(path).stem}_{method}"
        while stem in used:  # same file name in two folders
            stem += "_"
        used.add(stem)
        written.append(save_png(fig, out / f"{stem}.png"))
        rows.append(row)
    if rows:
        write_text(out / "explanations.csv", pd.DataFrame(rows).to_csv(index=False))
    return written, problems
