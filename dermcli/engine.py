"""Inference engines behind one interface: `runner.meta`, `runner.logits(uint8 NHWC) -> (N, outputs)` and
`runner.outputs(...) -> (logits, out-of-distribution scores or None)`.

ONNX Runtime is the default: it starts fast and runs about 1.7x faster than eager PyTorch on CPUs. The
.onnx for a checkpoint sits beside it (same name) or in the cache under the checkpoint's sha256, and
carries the checkpoint's metadata, so predicting from it never imports torch. The cache also keeps the
graph as this machine's ONNX Runtime optimised it: loading that skips the optimisation passes, which
take 0.3 s of a ResNet50's cold start.
"""

import hashlib
import json
import os
import warnings
from contextlib import nullcontext, suppress
from pathlib import Path

import numpy as np

from dermcli import PROJECT_ROOT
from dermcli.data.cache import cache_dir
from dermcli.errors import DermcliError
from dermcli.io import atomic_path, write_text
from dermcli.preprocess import normalize

ENGINES = ("auto", "onnx", "torch")
TTA = ("none", "flips", "dihedral")  # test-time augmentation: 1, 4 or 8 views averaged
TOLERANCE = 1e-4  # max abs difference of probabilities between the engines
DISTANCE_TOLERANCE = 1e-3  # max relative difference of out-of-distribution distances (a warning flag needs no more)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class TorchRunner:
    def __init__(self, model, meta: dict):
        self.model, self.meta = model, meta

    @classmethod
    def load(cls, weights: Path, device="cpu") -> "TorchRunner":
        import torch

        from dermcli.ood import inference_model

        model, meta = inference_model(weights)
        return cls(model.to(device, memory_format=torch.channels_last), meta)  # NHWC convolutions run faster

    def outputs(self, images: np.ndarray, batch_size: int = 32, track=None) -> tuple[np.ndarray, np.ndarray | None]:
        from dermcli.batches import ImageBatches, predict_outputs

        out = predict_outputs(self.model, ImageBatches(images, self.meta["preprocessing"]), batch_size, track)
        return out[0], (out[1] if len(out) > 1 else None)

    def logits(self, images: np.ndarray, batch_size: int = 32, track=None) -> np.ndarray:
        return self.outputs(images, batch_size, track)[0]


class OnnxRunner:
    """`optimized`: the file was written by `save_optimized` (hardware-specific; its passes are not rerun)."""

    def __init__(self, onnx_path: Path, optimized: bool = False, save_optimized: Path | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        from dermcli.distributed import environment

        # the machine's cores, shared among the processes torchrun started on it
        options.intra_op_num_threads = max(1, (os.cpu_count() or 1) // environment().local_size)
        options.log_severity_level = 3
        if optimized:
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        with atomic_path(save_optimized) if save_optimized else nullcontext() as tmp:
            if tmp:
                options.optimized_model_filepath = str(tmp)
            self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self.meta = json.loads(self.session.get_modelmeta().custom_metadata_map["dermcli"])

    def outputs(self, images: np.ndarray, batch_size: int = 32, track=None) -> tuple[np.ndarray, np.ndarray | None]:
        starts = range(0, len(images), batch_size)
        out = [self.session.run(None, {"images": normalize(images[s:s + batch_size], self.meta["preprocessing"])})
               for s in (track(starts, "predicting", len(starts)) if track else starts)]
        if not out:
            return np.zeros((0, 1), dtype=np.float32), None
        columns = [np.concatenate(column) for column in zip(*out)]
        return columns[0], (columns[1] if len(columns) > 1 else None)

    def logits(self, images: np.ndarray, batch_size: int = 32, track=None) -> np.ndarray:
        return self.outputs(images, batch_size, track)[0]


def example_images(size: int) -> np.ndarray:
    """The bundled example lesions (random pixels if dermcli runs without its repository)."""
    from dermcli.data.images import load_rgb

    examples = sorted((PROJECT_ROOT / "examples").glob("*.jpg"))
    if not examples:
        return np.random.default_rng(0).integers(0, 256, (4, size, size, 3), dtype=np.uint8)
    return np.stack([load_rgb(p, size) for p in examples])


def export_onnx(weights: Path, out: Path, check_images: np.ndarray | None = None) -> Path:
    """Write `out` from a checkpoint, with its metadata, and verify it against PyTorch on `check_images`."""
    import onnx
    import torch

    from dermcli.metrics import probabilities
    from dermcli.ood import ScoredModel, inference_model

    model, meta = inference_model(weights)
    meta = {**meta, "checkpoint_sha256": sha256(weights)}
    size = meta["input_size"]
    dummy = torch.zeros(2, 3, size, size)
    outputs = ["logits", "ood_score"] if isinstance(model, ScoredModel) else ["logits"]
    with atomic_path(out) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (dummy,), str(tmp), dynamo=False, input_names=["images"], output_names=outputs,
                          dynamic_axes={"images": {0: "batch"}, **{name: {0: "batch"} for name in outputs}}, opset_version=17)
        proto = onnx.load(str(tmp))
        entry = proto.metadata_props.add()
        entry.key, entry.value = "dermcli", json.dumps(meta, default=str)
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


def checkpoint_digest(weights: Path) -> str:
    """sha256 of `weights`, remembered under its path, size, mtime, inode and ctime: a warm start skips hashing
    100 MB. Inode and ctime catch a same-size replacement whose mtime was kept (`cp -p`, `rsync -a`)."""
    st = os.stat(weights)
    stat = f"{os.path.abspath(weights)}\t{st.st_size}\t{st.st_mtime_ns}\t{st.st_ino}\t{st.st_ctime_ns}"
    stat_key = hashlib.sha256(stat.encode()).hexdigest()[:24]
    memo = cache_dir() / "onnx" / f"sha256-{stat_key}.txt"
    try:
        digest = memo.read_text().strip()
        if len(digest) == 64:
            return digest
    except OSError:
        pass
    digest = sha256(weights)
    with suppress(DermcliError, OSError):  # an unwritable cache only costs time
        write_text(memo, digest)
    return digest


def _matching_runner(path: Path, digest: str, **options) -> OnnxRunner | None:
    try:
        runner = OnnxRunner(path, **options)
    except Exception:  # corrupt or foreign file: rebuild rather than trust it
        return None
    return runner if runner.meta.get("checkpoint_sha256") == digest else None


def cached_onnx(weights: Path) -> OnnxRunner:
    """A runner on an .onnx known to match `weights`: this machine's optimised copy in the cache, else the
    file beside the weights or the cache's portable export (made once), saving an optimised copy."""
    import onnxruntime as ort

    digest, folder = checkpoint_digest(weights), cache_dir() / "onnx"
    optimized = folder / f"{digest}.ort-{ort.__version__}.onnx"
    if optimized.is_file() and (runner := _matching_runner(optimized, digest, optimized=True)):
        return runner
    for candidate in (Path(weights).with_suffix(".onnx"), folder / f"{digest}.onnx"):
        if candidate.is_file() and _matching_runner(candidate, digest):
            portable = candidate
            break
    else:
        portable = export_onnx(weights, folder / f"{digest}.onnx")
    try:
        return OnnxRunner(portable, save_optimized=optimized)
    except DermcliError:  # an unwritable cache only costs time
        return OnnxRunner(portable)


def load_runner(weights: Path, engine: str = "auto", log=lambda msg: None, device: str = "auto"):
    """The engine for `weights`. On a GPU, PyTorch runs the model there (the ONNX Runtime installed with dermcli
    is its CPU build; PyTorch is already here and needs no second CUDA stack); on the CPU, auto is ONNX Runtime."""
    if engine not in ENGINES:
        raise DermcliError(f"--engine {engine!r} is not one of {', '.join(ENGINES)}")
    weights = Path(weights)
    from dermcli.devices import resolve_device

    where = resolve_device(device)
    if str(where) != "cpu":
        if engine == "onnx":
            raise DermcliError(f"--engine onnx runs on the CPU: use --engine torch (or auto) with --device {device}")
        log(f"running on {where} with PyTorch")
        return TorchRunner.load(weights, where)
    if engine == "torch":
        return TorchRunner.load(weights)
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        if engine == "onnx":
            raise DermcliError("--engine onnx needs onnxruntime: pip install onnxruntime") from None
        log("onnxruntime is not installed: using PyTorch")
        return TorchRunner.load(weights)
    if weights.is_dir() or not weights.is_file():
        return TorchRunner.load(weights)  # the checkpoint loader words the error
    try:
        return cached_onnx(weights)
    except DermcliError:
        raise
    except Exception as e:
        if engine == "onnx":
            raise DermcliError(f"cannot run {weights} with ONNX Runtime ({type(e).__name__}: {e})") from None
        log(f"ONNX export failed ({type(e).__name__}); using PyTorch")
        return TorchRunner.load(weights)


def check_tta(tta: str | None) -> None:
    if tta is not None and tta not in TTA:
        raise DermcliError(f"--tta {tta!r} is not one of {', '.join(TTA)}")


def tta_views(images: np.ndarray, tta: str) -> list[np.ndarray]:
    """The views of uint8 (N, S, S, 3) images that --tta averages: itself; with flips, also mirrored left-right,
    up-down and both; with dihedral, all 8 symmetries of the square (4 turns, each also mirrored)."""
    check_tta(tta)
    if tta == "none":
        return [images]
    if tta == "flips":
        return [images, images[:, :, ::-1], images[:, ::-1], images[:, ::-1, ::-1]]
    turns = [np.rot90(images, k, axes=(1, 2)) for k in range(4)]
    return turns + [t[:, :, ::-1] for t in turns]


def predict_scored(runner, images: np.ndarray, tta: str = "none", batch_size: int = 32, track=None) -> tuple[np.ndarray, np.ndarray | None]:
    """Calibrated class probabilities (the checkpoint's temperature) averaged over the --tta views, and the
    out-of-distribution distances of the images as they are (None without fitted statistics)."""
    from dermcli.metrics import probabilities

    plain, *turned = tta_views(images, tta)
    logits, scores = runner.outputs(np.ascontiguousarray(plain), batch_size, track)
    views = [logits] + [runner.logits(np.ascontiguousarray(v), batch_size, track) for v in turned]
    return np.mean([probabilities(v, runner.meta["temperature"]) for v in views], axis=0), scores


def predict_probabilities(runner, images: np.ndarray, tta: str = "none", batch_size: int = 32, track=None) -> np.ndarray:
    """Calibrated class probabilities (the checkpoint's temperature), averaged over the --tta views."""
    return predict_scored(runner, images, tta, batch_size, track)[0]
