"""The engine for a checkpoint: ONNX Runtime on the CPU (its graph exported once and cached under the checkpoint's sha256), PyTorch on a GPU."""

import hashlib
import os
from contextlib import suppress
from pathlib import Path

from dermcli.core.errors import DermcliError
from dermcli.core.files import write_text
from dermcli.data.cache import cache_dir
from dermcli.inference.export import export_onnx
from dermcli.inference.runners import OnnxRunner, TorchRunner, sha256
from dermcli.runtime.devices import resolve_device

ENGINES = ("auto", "onnx", "torch")


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


def cached_onnx(weights: Path, log=lambda msg: None) -> OnnxRunner:
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
    else:  # a first run says what it is waiting for
        log(f"preparing the ONNX model of {Path(weights).name} once (export, then a check against PyTorch; later runs reuse it)")
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
        return cached_onnx(weights, log)
    except DermcliError:
        raise
    except Exception as e:
        if engine == "onnx":
            raise DermcliError(f"cannot run {weights} with ONNX Runtime ({type(e).__name__}: {e})") from None
        log(f"ONNX export failed ({type(e).__name__}); using PyTorch")
        return TorchRunner.load(weights)
