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
from contextlib import nullcontext
from pathlib import Path

import numpy as np

from dermcli.core.files import atomic_path
from dermcli.data.transforms import normalize
from dermcli.runtime.distributed import environment


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
        import torch  # torch and the model modules only when PyTorch runs: an ONNX predict never loads them

        from dermcli.models.loading import inference_model

        model, meta = inference_model(weights)
        return cls(model.to(device, memory_format=torch.channels_last), meta)  # NHWC convolutions run faster

    def outputs(self, images: np.ndarray, batch_size: int = 32, track=None) -> tuple[np.ndarray, np.ndarray | None]:
        from dermcli.data.batches import ImageBatches  # torch, as in load
        from dermcli.inference.forward import predict_outputs

        out = predict_outputs(self.model, ImageBatches(images, self.meta["preprocessing"]), batch_size, track)
        return out[0], (out[1] if len(out) > 1 else None)

    def logits(self, images: np.ndarray, batch_size: int = 32, track=None) -> np.ndarray:
        return self.outputs(images, batch_size, track)[0]


class OnnxRunner:
    """`optimized`: the file was written by `save_optimized` (hardware-specific; its passes are not rerun)."""

    def __init__(self, onnx_path: Path, optimized: bool = False, save_optimized: Path | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()

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


