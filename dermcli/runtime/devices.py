"""Where a model runs and in what precision: `--device` and `--amp`, as options threaded through one loop."""

import os
import platform
from contextlib import nullcontext

from dermcli.core.errors import DermcliError
from dermcli.runtime.distributed import environment

AMP = ("bf16", "fp16", "none")


def available() -> list[str]:
    import torch

    names = ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        names.append("mps")
    return names


def could_have_gpu() -> bool:
    """Without importing torch (a cold `predict` on the CPU must not pay for it): an NVIDIA driver, or an Apple-silicon Mac."""
    return os.path.exists("/proc/driver/nvidia/version") or (platform.system() == "Darwin" and platform.machine() == "arm64")


def resolve_device(name: str = "auto"):
    """auto: CUDA if there is one, else Apple's MPS, else the CPU. An absent device is a one-line error.
    Returns a torch.device, or the string "cpu" when auto finds no GPU (so torch need not be imported)."""
    if name in ("auto", "cpu") and (name == "cpu" or not could_have_gpu()):
        return "cpu"
    try:
        import torch
    except ModuleNotFoundError:
        if name == "auto":  # the light install (no torch) runs on the CPU through ONNX Runtime, GPU or not
            return "cpu"
        raise

    if name == "auto":
        return per_process(torch.device(next((d for d in available() if d != "cpu"), "cpu").replace("cuda:0", "cuda")), name)
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DermcliError(f"--device {name!r} is not a device (auto, cpu, cuda, cuda:N or mps)") from None
    wanted = f"cuda:{device.index or 0}" if device.type == "cuda" else device.type
    if wanted not in available():
        raise DermcliError(f"--device {name}: not on this machine (available: {', '.join(available())})")
    return per_process(device, name)


def per_process(device, name: str):
    """Under torchrun with several processes, each takes the GPU of its LOCAL_RANK (one GPU per process)."""
    import torch

    world = environment()
    processes, local_rank = world.local_size, world.local_rank
    if device.type != "cuda" or processes == 1:
        return device
    if device.index is not None:
        raise DermcliError(f"--device {name}: under torchrun each process takes its own GPU (cuda:LOCAL_RANK): use --device cuda or auto")
    if local_rank >= torch.cuda.device_count():
        raise DermcliError(f"torchrun started {processes} processes on a machine with {torch.cuda.device_count()} GPUs: use --nproc-per-node {torch.cuda.device_count()}")
    return torch.device("cuda", local_rank)


def resolve_amp(amp: str, device) -> str:
    """'' (the default): bf16 on GPUs that support it, none elsewhere. fp16 needs CUDA (its loss scaler)."""
    import torch

    device = torch.device(device)
    if not amp:
        return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "none"
    if amp not in AMP:
        raise DermcliError(f"--amp {amp!r} is not one of {', '.join(AMP)}")
    if amp == "fp16" and device.type != "cuda":
        raise DermcliError(f"--amp fp16 needs a CUDA device (this run is on {device.type}): use bf16 or none")
    return amp


class NonFiniteLoss(Exception):
    pass


class Precision:
    """torch.autocast for the forward pass, and a gradient scaler under fp16 (which skips a step whose
    gradients overflowed). Losses are computed in fp32 from fp32 logits. Without a scaler, a non-finite loss
    raises NonFiniteLoss before it can reach the weights."""

    def __init__(self, amp: str, device):
        import torch

        self.device = torch.device(device)
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "none": None}[amp]
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.dtype is torch.float16)

    def autocast(self):
        import torch

        return torch.autocast(self.device.type, dtype=self.dtype) if self.dtype is not None else nullcontext()

    def step(self, loss, optimizer) -> None:
        import torch

        if not self.scaler.is_enabled() and not torch.isfinite(loss):
            raise NonFiniteLoss
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)
        self.scaler.update()


def module_device(module):
    import torch

    return next((p.device for p in module.parameters()), torch.device("cpu"))
