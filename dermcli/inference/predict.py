"""Predict on image files, folders or globs; bad files are reported and skipped, never fatal."""

import glob
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dermcli import PROJECT_ROOT
from dermcli.core.errors import DermcliError
from dermcli.core.labels import malignant_score, score_label
from dermcli.core.options import check
from dermcli.data.images import IMAGE_SUFFIXES, ImageError, decode_rgb, image_sizes, reduced_size
from dermcli.inference.loading import load_runner
from dermcli.inference.tta import check_tta, predict_scored

REPO_WEIGHTS = PROJECT_ROOT / "weights"
SHIPPED = {"lite0": REPO_WEIGHTS / "lite0_ensemble_ham10000_7class.pt", "cnn": REPO_WEIGHTS / "cnn_ham10000_7class.pt",
           "cnn-distilled": REPO_WEIGHTS / "cnn_distilled_ham10000_7class.pt", "resnet50": REPO_WEIGHTS / "resnet50_ham10000_binary.pt"}
DEFAULT_MODEL = "lite0"  # the 7-class model at 224 pixels that beat the 28x28 CNN on validation (README, "Shipped models")
SHIPPED_BACKENDS = {"lite0": "ensemble", "cnn-distilled": "cnn"}  # --model NAME -> the backend of its checkpoints, where the two differ
DISCLAIMER = "Research use only. Not a medical device; not for diagnosis or treatment decisions."


@dataclass
class Prediction:
    image: str
    label: str  # predicted class (7-class) or MALIGNANT/BENIGN (binary)
    confidence: float  # probability of `label`
    probabilities: dict[str, float]
    malignant_score: float | None  # None: the model has no benign/malignant view (core.labels.has_binary_view)
    threshold: float | None
    ood_score: float | None = None  # distance from the training images (models.unusual); None: the weights have no statistics
    ood_threshold: float | None = None
    resampled: str | None = None  # "resampled WxH -> wxh (...)" when brought down to the training images' resolution
    score_label: str = ""  # what the malignant score sums, e.g. p(mel)+p(bcc)+p(akiec) (core.labels.score_label)

    @property
    def malignant(self) -> bool | None:
        return None if self.malignant_score is None else self.malignant_score >= self.threshold

    @property
    def unusual(self) -> bool | None:
        """True when the image is further from the training images than the checkpoint's share of validation images (its ood_pass_rate)."""
        return None if self.ood_score is None else self.ood_score > self.ood_threshold


def expected_backend(model: str | None) -> str | None:
    """The checkpoint backend that --model asks for (None: any)."""
    return SHIPPED_BACKENDS.get(model, model) if model else None


def default_weights(model: str | None) -> Path:
    model = model or DEFAULT_MODEL
    if model not in SHIPPED:
        raise DermcliError(f"unknown model {model!r} (choose from {', '.join(SHIPPED)})")
    path = SHIPPED[model]
    if not path.is_file():
        raise DermcliError(f"no shipped weights at {path}: train a model (`dermcli train --model {model} ...`) and pass --weights RUN/best.pt")
    return path


def collect_images(inputs: list[str]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Expand files, folders (recursively) and globs into image paths; also (input, problem) pairs."""
    found, problems = [], []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            images = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            found += images
            if not images:
                problems.append((item, "folder holds no images (jpg, jpeg, png, bmp, tif)"))
        elif path.is_file():
            found.append(path)
        elif glob.has_magic(item):
            matches = sorted(Path(p) for p in glob.glob(item, recursive=True) if Path(p).is_file())
            found += matches
            if not matches:
                problems.append((item, "pattern matches no files"))
        else:
            problems.append((item, "no such file or folder"))
    return list(dict.fromkeys(found)), problems


def to_predictions(paths: list[Path], probs: np.ndarray, meta: dict, threshold: float, distances: np.ndarray | None = None,
                   resampled: list[str | None] | None = None) -> list[Prediction]:
    names, binary = meta["class_names"], meta["task"] == "binary"
    scores = malignant_score(probs, meta)
    scores = [None] * len(paths) if scores is None else scores.tolist()
    ood = [(float(d), meta["ood_threshold"]) for d in distances] if distances is not None else [(None, None)] * len(paths)
    out = []
    for path, p, score, (distance, limit), note in zip(paths, probs, scores, ood, resampled or [None] * len(paths)):
        if binary:
            label, confidence = ("MALIGNANT", score) if score >= threshold else ("BENIGN", 1 - score)
        else:
            label, confidence = names[int(p.argmax())], p.max()
        out.append(Prediction(str(path), label, float(confidence), {n: float(v) for n, v in zip(names, p)}, score,
                              None if score is None else float(threshold), distance, limit, note, score_label(meta)))
    return out


def prediction_record(p: Prediction) -> dict:
    """A prediction as `predict --json` prints it (and `dermcli serve` answers it): every field, the verdict and the flag."""
    return {**vars(p), "malignant": p.malignant, "unusual": p.unusual}


def check_backend(meta: dict, model: str | None, weights: Path) -> None:
    """Refuse weights of another backend than --model names."""
    if model and meta["backend"] != expected_backend(model):
        raise DermcliError(f"{weights}: a {meta['backend']} checkpoint, not {model}")


def prediction_row(p: Prediction) -> dict:
    """A prediction as a CSV row: image, label, p_<class> for each class, malignant_score (6 decimals)."""
    return {"image": p.image, "label": p.label, **{f"p_{k}": round(v, 6) for k, v in p.probabilities.items()},
            "malignant_score": None if p.malignant_score is None else round(p.malignant_score, 6)}


def default_tta(tta: str | None, meta: dict) -> str:
    """--tta, else the checkpoint's own (an ensemble is calibrated on its views), else none."""
    return tta or meta.get("tta", "none")


def input_resolution(meta: dict, native: bool, log, weights: Path) -> int | None:
    """The short side that larger inputs are first brought down to: the training images' (load_rgb). None with
    `native` (--native-resolution), or for a checkpoint that does not record it, which is logged once."""
    if native:
        return None
    if "training_resolution" not in meta:
        log(f"note: {weights} does not record its training images' resolution: "
            f"every input is resized straight to {meta['input_size']}x{meta['input_size']}, as before")
        return None
    return meta["training_resolution"]["short_side"]


def _sizes(sizes: tuple) -> str:
    (width, height), (to_width, to_height) = sizes
    return f"{width}x{height} -> {to_width}x{to_height}"


def resampled_note(path: Path, sizes: tuple | None, log) -> str | None:
    """Say (to the log, and returned for the prediction) that `path` was brought down, given decode_rgb's sizes."""
    if sizes is None:
        return None
    note = f"resampled {_sizes(sizes)} (the training images' resolution)"
    log(f"{path}: {note}")
    return note


def log_resampled(paths: list, resolution: int | None, log) -> None:
    """Say how many of `paths` decode_rgb brings down to `resolution`, with the first one's sizes (read from the headers)."""
    if resolution is None:
        return
    larger = [(size, reduced) for size in image_sizes(paths) if (reduced := reduced_size(size, resolution))]
    if larger:
        log(f"resampled {len(larger)} of {len(paths)} images to the training images' resolution, short side {resolution} "
            f"(the first {_sizes(larger[0])})")


def predict(inputs: list[str], weights: Path | None = None, model: str | None = None, threshold: float | None = None,
            engine: str = "auto", batch_size: int = 32, track=None, log=lambda msg: None,
            tta: str | None = None, device: str = "auto",
            native_resolution: bool = False) -> tuple[list[Prediction], list[tuple[str, str]]]:
    """Predictions for every readable image, and (path, problem) for every input that failed.

    Without `weights`, the shipped weights of `model` (default DEFAULT_MODEL) are used; with both, weights of
    another backend are refused. `threshold` overrides the checkpoint's validation-tuned threshold. Inputs larger
    than the training images are first brought down to their resolution, unless `native_resolution`.
    """

    check("threshold", threshold)
    check_tta(tta)
    paths, problems = collect_images(inputs)
    if not paths and problems:
        return [], problems
    weights = Path(weights) if weights else default_weights(model)
    runner = load_runner(weights, engine, log, device)
    meta = runner.meta
    check_backend(meta, model, weights)
    resolution = input_resolution(meta, native_resolution, log, weights)
    good, pixels, notes = [], [], []
    for path, image, note in readable(paths, meta["input_size"], resolution, problems, "reading images", track, log):
        pixels.append(image)
        good.append(path)
        notes.append(note)
    if not good:
        return [], problems
    probs, distances = predict_scored(runner, np.stack(pixels), default_tta(tta, meta), batch_size)
    return to_predictions(good, probs, meta, meta["threshold"] if threshold is None else threshold, distances, notes), problems


def readable(paths: list[Path], size: int, resolution: int | None, problems: list, label: str, track=None, log=lambda msg: None):
    """(path, decoded image, resampling note) for each image that decodes; the others go to `problems` as
    (path, problem), and batch work carries on."""
    for path in track(paths, label, len(paths)) if track and len(paths) > 1 else paths:
        try:
            image, sizes = decode_rgb(path, size, resolution)
        except ImageError as e:
            problems.append((str(path), str(e).removeprefix(f"{path}: ")))
            continue
        yield path, image, resampled_note(path, sizes, log)
