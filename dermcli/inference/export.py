"""A checkpoint as an ONNX graph carrying its metadata, checked against PyTorch before it is kept."""

import json
import warnings
from pathlib import Path

import numpy as np

from dermcli import PROJECT_ROOT
from dermcli.core.errors import DermcliError
from dermcli.core.files import atomic_path
from dermcli.data.images import load_rgb
from dermcli.inference.runners import OnnxRunner, TorchRunner, sha256
from dermcli.models.outputs import probabilities

TOLERANCE = 1e-4  # max abs difference of probabilities between the engines


DISTANCE_TOLERANCE = 1e-3  # max relative difference of out-of-distribution distances (a warning flag needs no more)


def example_images(size: int) -> np.ndarray:
    """The bundled example lesions (random pixels if dermcli runs without its repository)."""
    examples = sorted((PROJECT_ROOT / "examples").glob("*.jpg"))
    if not examples:
        return np.random.default_rng(0).integers(0, 256, (4, size, size, 3), dtype=np.uint8)
    return np.stack([load_rgb(p, size) for p in examples])


def _set_metadata(proto, meta: dict) -> None:
    """The checkpoint's metadata, under "dermcli": what OnnxRunner reads instead of the checkpoint."""
    entry = next((e for e in proto.metadata_props if e.key == "dermcli"), None) or proto.metadata_props.add()
    entry.key, entry.value = "dermcli", json.dumps(meta, default=str)


def store_exact_half(proto, smallest: int = 4096) -> None:
    """Store in fp16, each cast back to fp32 where the graph starts, every fp32 weight whose values fp16 holds
    exactly: a checkpoint shipped in fp16 gives an .onnx of half the size that computes the same numbers (ONNX
    Runtime folds the casts at load). Other weights, and small ones, stay as they are."""
    import onnx
    from onnx import helper, numpy_helper

    casts = []
    for init in proto.graph.initializer:
        values = numpy_helper.to_array(init)
        if values.dtype != np.float32 or values.size < smallest or not np.isfinite(values).all():
            continue
        with np.errstate(over="ignore"):
            half = values.astype(np.float16)
        if np.array_equal(half.astype(np.float32), values):
            name = init.name
            init.CopyFrom(numpy_helper.from_array(half, f"{name}.fp16"))
            casts.append(helper.make_node("Cast", [f"{name}.fp16"], [name], to=onnx.TensorProto.FLOAT, name=f"{name}.cast"))
    for node in reversed(casts):
        proto.graph.node.insert(0, node)


def restamp_onnx(path: Path, weights: Path) -> Path:
    """Give `path`, exported from `weights` before a rewrite of its metadata alone, the checkpoint's metadata and
    sha256 as they are now, keeping the graph and its weights."""
    import onnx  # onnx and torch here, as in export_onnx

    from dermcli.models.checkpoint import read_checkpoint

    proto = onnx.load(str(path))
    _set_metadata(proto, {**read_checkpoint(weights)["meta"], "checkpoint_sha256": sha256(weights)})
    with atomic_path(path) as tmp:
        onnx.save(proto, str(tmp))
    return path


def export_onnx(weights: Path, out: Path, check_images: np.ndarray | None = None) -> Path:
    """Write `out` from a checkpoint, with its metadata, and verify it against PyTorch on `check_images`."""
    import onnx  # here, not above: predicting from a cached .onnx never loads onnx or torch
    import torch

    from dermcli.models.loading import inference_model
    from dermcli.models.unusual import ScoredModel

    model, meta = inference_model(weights)
    meta = {**meta, "checkpoint_sha256": sha256(weights)}
    size = meta["input_size"]
    dummy = torch.zeros(2, 3, size, size)
    outputs = ["logits", "ood_score"] if isinstance(model, ScoredModel) else ["logits"]
    with atomic_path(out) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (dummy,), str(tmp), dynamo=False, input_names=["images"], output_names=outputs,
                          dynamic_axes={"images": {0: "batch"}, **{name: {0: "batch"} for name in outputs}}, opset_version=17,
                          training=torch.onnx.TrainingMode.PRESERVE)  # eval mode, BatchNorm unfolded: weights stay as stored
        proto = onnx.load(str(tmp))
        store_exact_half(proto)
        _set_metadata(proto, meta)
        onnx.save(proto, str(tmp))
        if check_images is None:
            check_images = example_images(size)
        (expected, expected_score), (got, got_score) = TorchRunner(model, meta).outputs(check_images), OnnxRunner(tmp).outputs(check_images)
        difference = float(np.abs(probabilities(expected, meta["temperature"]) - probabilities(got, meta["temperature"])).max())
        if expected_score is not None and np.abs(expected_score - got_score).max() > DISTANCE_TOLERANCE * max(np.abs(expected_score).max(), 1.0):
            raise DermcliError(f"ONNX export of {weights} gives other out-of-distribution distances than PyTorch; use --engine torch")
        if difference > TOLERANCE:
            raise DermcliError(f"ONNX export of {weights} differs from PyTorch by {difference:.2e} (> {TOLERANCE}); use --engine torch")
    return out
