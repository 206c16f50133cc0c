import numpy as np
import pytest
import torch

from dermcli.data.cache import cache_dir
from dermcli.data.images import load_rgb
from dermcli.inference.export import export_onnx
from dermcli.inference.loading import cached_onnx, load_runner
from dermcli.inference.predict import predict
from dermcli.inference.runners import OnnxRunner, TorchRunner, sha256
from dermcli.models.checkpoint import save_checkpoint
from dermcli.models.outputs import probabilities
from dermcli.models.registry import get_backend
from tests.conftest import REPO

EXAMPLES = sorted((REPO / "examples").glob("*.jpg"))


def checkpoint(path, backend="cnn", task="multiclass", seed=0):
    torch.manual_seed(seed)
    b = get_backend(backend)
    names = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"] if task == "multiclass" else ["benign", "malignant"]
    meta = {"backend": backend, "task": task, "class_names": names, "input_size": b.input_size, "preprocessing": b.default_preprocessing,
            "model_options": {}, "threshold": 0.35, "temperature": 1.3}
    model = b.build(7 if task == "multiclass" else 1, {}).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, as in a trained model
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                m.running_mean.uniform_(-0.2, 0.2), m.running_var.uniform_(0.5, 1.5)
    save_checkpoint(path, model, meta)
    return path


@pytest.mark.parametrize("backend, task", [("cnn", "multiclass"), ("resnet50", "binary")])
@pytest.mark.slow
def test_onnx_matches_torch_on_real_images_and_carries_metadata(tmp_path, backend, task):
    weights = checkpoint(tmp_path / f"{backend}.pt", backend, task)
    onnx_path = export_onnx(weights, tmp_path / f"{backend}.onnx")
    onnx_runner, torch_runner = OnnxRunner(onnx_path), TorchRunner.load(weights)
    assert onnx_runner.meta["checkpoint_sha256"] == sha256(weights)
    assert onnx_runner.meta["threshold"] == 0.35 and onnx_runner.meta["temperature"] == 1.3
    assert onnx_runner.meta["class_names"] == torch_runner.meta["class_names"]
    pixels = np.stack([load_rgb(p, torch_runner.meta["input_size"]) for p in EXAMPLES])
    expected = probabilities(torch_runner.logits(pixels), 1.3)
    assert np.abs(probabilities(onnx_runner.logits(pixels), 1.3) - expected).max() <= 1e-4


def test_cached_export_is_reused_and_stale_or_corrupt_files_are_rebuilt(tmp_path):
    import onnxruntime

    weights = checkpoint(tmp_path / "m.pt")
    cached_onnx(weights)
    portable = cache_dir() / "onnx" / f"{sha256(weights)}.onnx"
    optimized = portable.with_suffix(f".ort-{onnxruntime.__version__}.onnx")  # this machine's optimised graph
    stamps = portable.stat().st_mtime_ns, optimized.stat().st_mtime_ns
    cached_onnx(weights)
    assert (portable.stat().st_mtime_ns, optimized.stat().st_mtime_ns) == stamps  # reused

    optimized.write_bytes(b"not an onnx file")
    assert cached_onnx(weights).meta["checkpoint_sha256"] == sha256(weights)
    assert optimized.stat().st_mtime_ns != stamps[1]  # rebuilt from the portable file
    portable.write_bytes(b"not an onnx file")
    optimized.unlink()
    assert cached_onnx(weights).meta["checkpoint_sha256"] == sha256(weights)
    assert portable.stat().st_mtime_ns != stamps[0]  # exported again

    stale = weights.with_suffix(".onnx")  # an .onnx beside the weights, but of other weights
    export_onnx(checkpoint(tmp_path / "other.pt", seed=1), stale)
    assert cached_onnx(weights).meta["checkpoint_sha256"] == sha256(weights)


def test_changed_weights_at_the_same_path_are_not_served_from_the_cache(tmp_path):
    weights = checkpoint(tmp_path / "m.pt")
    first = cached_onnx(weights).meta["checkpoint_sha256"]
    checkpoint(weights, seed=1)  # new weights, same path: its size or mtime changes
    assert cached_onnx(weights).meta["checkpoint_sha256"] == sha256(weights) != first


def test_predict_gives_the_same_answers_on_both_engines(tmp_path):
    weights = checkpoint(tmp_path / "m.pt")
    by_onnx, _ = predict([str(p) for p in EXAMPLES], weights, engine="onnx")
    by_torch, _ = predict([str(p) for p in EXAMPLES], weights, engine="torch")
    assert [p.label for p in by_onnx] == [p.label for p in by_torch]
    assert max(abs(a.malignant_score - b.malignant_score) for a, b in zip(by_onnx, by_torch)) <= 1e-4


def test_unknown_engine_is_refused(tmp_path):
    from dermcli.core.errors import DermcliError

    with pytest.raises(DermcliError, match="--engine 'tpu'"):
        load_runner(checkpoint(tmp_path / "m.pt"), "tpu")


def test_predicting_with_onnx_imports_no_torch(tmp_path):
    import subprocess
    import sys

    weights = checkpoint(tmp_path / "m.pt")
    cached_onnx(weights)
    code = ("import sys; from dermcli.inference.predict import predict; r, _ = predict([sys.argv[1]], sys.argv[2]); "
            "print(len(r), sorted(m for m in ('torch', 'torchvision', 'sklearn', 'pandas', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(EXAMPLES[0]), str(weights)], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "[]"]
