"""The model that `dermcli serve` loads once: predictions, Grad-CAM figures and its description, for images held
in memory. No web framework here: the routes (serving.api) call these plain methods in their worker thread."""

import base64
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dermcli.core.errors import DermcliError
from dermcli.data.images import decode_rgb
from dermcli.evaluation.card import card_headline
from dermcli.inference.loading import checkpoint_digest, load_runner
from dermcli.inference.predict import (
    DEFAULT_MODEL,
    DISCLAIMER,
    Prediction,
    check_backend,
    default_tta,
    default_weights,
    expected_backend,
    input_resolution,
    prediction_record,
    resampled_note,
    to_predictions,
)
from dermcli.inference.tta import check_tta, predict_scored

# Above the 108 MP of the largest phone and scanner photographs, and far below what PIL itself refuses (500 MP):
# a decoded RGB image of this many pixels takes 360 MB at most, and one is decoded at a time.
MAX_PIXELS = 120_000_000
ENGINE_NAMES = {"OnnxRunner": "onnxruntime", "TorchRunner": "pytorch"}


class ExplainUnavailable(DermcliError):
    """Grad-CAM needs PyTorch and torchcam, which an ONNX-only install lacks."""


@dataclass(frozen=True)
class Upload:
    name: str  # the client's file name, only echoed back: nothing touches the file system
    data: bytes


class Service:
    """One checkpoint, loaded once, as `predict` would load it (ONNX Runtime on the CPU for --engine auto)."""

    def __init__(self, weights: Path | None = None, model: str | None = None, engine: str = "auto", tta: str | None = None,
                 device: str = "auto", max_pixels: int = MAX_PIXELS, log=lambda msg: None):
        check_tta(tta)
        self.weights = Path(weights) if weights else default_weights(model)
        self.runner = load_runner(self.weights, engine, log, device)
        self.meta = self.runner.meta
        check_backend(self.meta, model, self.weights)
        self.name = model or (DEFAULT_MODEL if weights is None else self.meta["backend"])
        self.model, self.digest = model, checkpoint_digest(self.weights)
        self.tta, self.max_pixels = default_tta(tta, self.meta), max_pixels
        self.resolution = input_resolution(self.meta, False, log, self.weights)
        self.explainer = None  # a PyTorch runner, built on the first explain request

    def decode(self, upload: Upload) -> tuple[np.ndarray, str | None]:
        """The image as the model sees it, and predict's note when it was brought down to the training resolution."""
        image, sizes = decode_rgb(upload.name, self.meta["input_size"], self.resolution, data=upload.data, max_pixels=self.max_pixels)
        return image, resampled_note(upload.name, sizes, lambda msg: None)

    def predictions(self, uploads: list[Upload]) -> tuple[list[Prediction], list[np.ndarray]]:
        decoded = [self.decode(u) for u in uploads]
        images = [image for image, _ in decoded]
        probs, distances = predict_scored(self.runner, np.stack(images), self.tta)
        return to_predictions([u.name for u in uploads], probs, self.meta, self.meta["threshold"], distances,
                              [note for _, note in decoded]), images

    def predict(self, uploads: list[Upload], with_input: bool = False) -> list[dict]:
        """`predict --json`'s object for each upload, with the model, the checkpoint's digest and the disclaimer;
        `with_input` adds the image as the model saw it (a PNG data URL)."""
        found, images = self.predictions(uploads)
        return [{**prediction_record(p), "model": self.name, "checkpoint_sha256": self.digest, "disclaimer": DISCLAIMER,
                 **({"input_image": png_data_url(image)} if with_input else {})} for p, image in zip(found, images)]

    def explain(self, upload: Upload) -> bytes:
        """The Grad-CAM figure of `predict --explain` as PNG bytes, titled with this server's prediction."""
        try:
            import torch  # noqa: F401  PyTorch and torchcam only here: predictions run on ONNX Runtime without them
            import torchcam  # noqa: F401
        except ImportError:
            raise ExplainUnavailable("explain needs PyTorch and torchcam: pip install torch torchcam") from None
        from dermcli.core.figures import png_bytes
        from dermcli.inference.explain_images import explained_figure
        from dermcli.inference.runners import TorchRunner
        from dermcli.models.loading import load_model

        if self.explainer is None:
            self.explainer = TorchRunner(*load_model(self.weights, expect_backend=expected_backend(self.model)))
        found, images = self.predictions([upload])
        fig, _ = explained_figure(self.explainer, images[0], upload.name, found[0].resampled, tta=self.tta, prediction=found[0])
        return png_bytes(fig)

    def describe(self) -> dict:
        """GET /v1/model: what the model takes and answers, and its model card's headline figures."""
        meta = self.meta
        return {"model": self.name, "backend": meta["backend"], "task": meta["task"], "classes": list(meta["class_names"]),
                "input_size": meta["input_size"], "threshold": meta["threshold"], "temperature": meta["temperature"], "tta": self.tta,
                "unusual_threshold": meta.get("ood_threshold"), "engine": ENGINE_NAMES.get(type(self.runner).__name__),
                "checkpoint": self.weights.name, "checkpoint_sha256": self.digest, "model_card": card_headline(self.weights),
                "disclaimer": DISCLAIMER}


def png_data_url(image: np.ndarray) -> str:
    from PIL import Image  # already loaded by decoding; imported here as only the page asks for it

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
