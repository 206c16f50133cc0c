"""Predict on image files, folders or globs; bad files are reported and skipped, never fatal."""

import glob
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dermcli import PROJECT_ROOT
from dermcli.data.images import IMAGE_SUFFIXES, ImageError, load_rgb
from dermcli.errors import DermcliError
from dermcli.labels import MALIGNANT_INDICES
from dermcli.metrics import malignant_score
from dermcli.options import check

REPO_WEIGHTS = PROJECT_ROOT / "weights"
SHIPPED = {"lite0": REPO_WEIGHTS / "lite0_ensemble_ham10000_7class.pt", "cnn": REPO_WEIGHTS / "cnn_ham10000_7class.pt",
           "resnet50": REPO_WEIGHTS / "resnet50_ham10000_binary.pt"}
DEFAULT_MODEL = "lite0"  # the 7-class model at 224 pixels that beat the 28x28 CNN on validation (README, "Shipped models")
SHIPPED_BACKENDS = {"lite0": "ensemble"}  # --model NAME -> the backend of its checkpoints, where the two differ
DISCLAIMER = "Research use only. Not a medical device; not for diagnosis or treatment decisions."


@dataclass
class Prediction:
    image: str
    label: str  # predicted class (7-class) or MALIGNANT/BENIGN (binary)
    confidence: float  # probability of `label`
    probabilities: dict[str, float]
    malignant_score: float
    threshold: float
    ood_score: float | None = None  # distance from the training images (dermcli.ood); None: the weights have no statistics
    ood_threshold: float | None = None

    @property
    def malignant(self) -> bool:
        return self.malignant_score >= self.threshold

    @property
    def unusual(self) -> bool | None:
        """True when the image is further from the training images than 95% of validation images."""
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


def to_predictions(paths: list[Path], probs: np.ndarray, meta: dict, threshold: float, distances: np.ndarray | None = None) -> list[Prediction]:
    names, binary = meta["class_names"], meta["task"] == "binary"
    scores = probs[:, 1] if binary else malignant_score(probs, MALIGNANT_INDICES)
    ood = [(float(d), meta["ood_threshold"]) for d in distances] if distances is not None else [(None, None)] * len(paths)
    out = []
    for path, p, score, (distance, limit) in zip(paths, probs, scores, ood):
        if binary:
            label, confidence = ("MALIGNANT", score) if score >= threshold else ("BENIGN", 1 - score)
        else:
            label, confidence = names[int(p.argmax())], p.max()
        out.append(Prediction(str(path), label, float(confidence), {n: float(v) for n, v in zip(names, p)}, float(score), float(threshold),
                              distance, limit))
    return out


def prediction_row(p: Prediction) -> dict:
    """A prediction as a CSV row: image, label, p_<class> for each class, malignant_score (6 decimals)."""
    return {"image": p.image, "label": p.label, **{f"p_{k}": round(v, 6) for k, v in p.probabilities.items()},
            "malignant_score": round(p.malignant_score, 6)}


def default_tta(tta: str | None, meta: dict) -> str:
    """--tta, else the checkpoint's own (an ensemble is calibrated on its views), else none."""
    return tta or meta.get("tta", "none")


def predict(inputs: list[str], weights: Path | None = None, model: str | None = None, threshold: float | None = None,
            engine: str = "auto", batch_size: int = 32, track=None, log=lambda msg: None,
            tta: str | None = None, device: str = "auto") -> tuple[list[Prediction], list[tuple[str, str]]]:
    """Predictions for every readable image, and (path, problem) for every input that failed.

    Without `weights`, the shipped weights of `model` (default DEFAULT_MODEL) are used; with both, weights of
    another backend are refused. `threshold` overrides the checkpoint's validation-tuned threshold.
    """
    from dermcli.engine import check_tta, load_runner, predict_scored

    check("threshold", threshold)
    check_tta(tta)
    paths, problems = collect_images(inputs)
    if not paths and problems:
        return [], problems
    weights = Path(weights) if weights else default_weights(model)
    runner = load_runner(weights, engine, log, device)
    meta = runner.meta
    if model and meta["backend"] != expected_backend(model):
        raise DermcliError(f"{weights}: a {meta['backend']} checkpoint, not {model}")
    good, pixels = [], []
    for path in track(paths, "reading images", len(paths)) if track and len(paths) > 1 else paths:
        try:
            pixels.append(load_rgb(path, meta["input_size"]))
            good.append(path)
        except ImageError as e:
            problems.append((str(path), str(e).removeprefix(f"{path}: ")))
    if not good:
        return [], problems
    probs, distances = predict_scored(runner, np.stack(pixels), default_tta(tta, meta), batch_size)
    return to_predictions(good, probs, meta, meta["threshold"] if threshold is None else threshold, distances), problems
