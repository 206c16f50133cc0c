"""Training throughput (img/s) per device and precision: the ResNet50 full fine-tune at 224 and the CNN at 28.

    python benchmarks/train_throughput.py --json benchmarks/train_throughput_cpu.json
    python benchmarks/train_throughput.py --device cuda --json benchmarks/train_throughput_cuda.json
    python benchmarks/train_throughput.py --device cuda --resnet50-batch 256 --json OUT.json   # scripts/gpu_run.sh's bars

"real" is dermcli's training loop (train.train_one_epoch) on its own input pipeline: the decode-once uint8
cache of real HAM10000 images, augmented (flips, 90-degree turns, colour jitter) and normalised by numpy on the
CPU, or sent through pinned memory and augmented by tensor ops on a GPU. On a GPU, "synthetic" runs the same
loop on tensors already on the device, so the gap between the two is the input pipeline's cost. Each figure
follows two warm-up steps (kernel selection is a one-time cost) and counts every image of the timed steps.
The JSON's "pipeline" pairs give real / synthetic per model and precision (1.0: the input pipeline costs nothing).
"""

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from bench import card_loss  # benchmarks/ is this script's folder, so on sys.path

from dermcli.core.errors import DermcliError
from dermcli.data.batches import ImageBatches, Rows
from dermcli.data.cache import cached_images
from dermcli.data.dataset import load_dataset
from dermcli.data.split import make_split, select
from dermcli.models.registry import get_backend
from dermcli.runtime.devices import Precision, resolve_amp, resolve_device
from dermcli.training.loop import train_one_epoch

REPO = Path(__file__).resolve().parent.parent
MODELS = {"resnet50": 32, "cnn": 128}  # backend: batch size (the cards')


class SyntheticBatches:
    """Normalised random images already on the device: the training loop with no input pipeline."""

    def __init__(self, n: int, size: int, batch_size: int, device):
        self.n, self.x = n, torch.randn(batch_size, 3, size, size, device=device)

    def __len__(self) -> int:
        return self.n

    def get(self, idx, rng=None, part=None):
        return self.x[:len(idx)]


def throughput(backend_name: str, device, amp: str, synthetic: bool, paths: list[str], batch_size: int, size: int = 0) -> float:
    """img/s of one training pass over `paths` (a whole number of batches: every image is one step's)."""
    backend = get_backend(backend_name)
    outputs = 7 if backend_name == "cnn" else 1
    model = backend.build(outputs, {"pretrained": False}).to(device, memory_format=torch.channels_last)
    size = size or backend.input_size
    if synthetic:
        batches = SyntheticBatches(len(paths), size, batch_size, device)
    else:
        batches = ImageBatches(cached_images(paths, size), backend.default_preprocessing, "dihedral",
                               device if device.type != "cpu" else None)
    y = torch.randint(0, 2, (len(paths),))
    loss = card_loss(backend_name)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    precision = Precision(amp, device)
    rng = np.random.default_rng(0)
    train_one_epoch(model, Rows(batches, slice(0, 2 * batch_size)), y, loss, optimizer, rng, batch_size, precision=precision)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    train_one_epoch(model, batches, y, loss, optimizer, rng, batch_size, precision=precision)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return len(paths) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "ham10000")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--resnet50-images", type=int, default=0, help="training images timed for ResNet50 (0: 160 on a CPU, all on a GPU)")
    # A GPU saturates only at large batches; the card's 32 measures launch overhead as much as the chip.
    parser.add_argument("--resnet50-batch", type=int, default=MODELS["resnet50"], help="ResNet50's batch size (default: the card's 32)")
    # Subsets, so that scripts/gpu_run.sh --dry-run can run the same measurement on a CPU in seconds
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated: resnet50,cnn")
    parser.add_argument("--amps", default="", help="comma-separated: none,bf16,fp16 (default: none,bf16, and fp16 on a GPU)")
    parser.add_argument("--feeds", default="", help="comma-separated: real,synthetic (default: both on a GPU, real on a CPU)")
    parser.add_argument("--input-size", type=int, default=0, help="input size for every model (0: each model's own)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    try:
        device = torch.device(resolve_device(args.device))
        amps = [(amp, resolve_amp(amp, device)) for amp in (args.amps.split(",") if args.amps else [])]
    except DermcliError as e:  # an unknown or absent device or precision: one line, as dermcli's own
        raise SystemExit(f"error: {e}") from None
    models = args.models.split(",")
    amps = amps or [(amp, resolve_amp(amp, device)) for amp in ["none", "bf16"] + (["fp16"] if device.type == "cuda" else [])]
    feeds = args.feeds.split(",") if args.feeds else ["real", "synthetic"] if device.type == "cuda" else ["real"]
    wrong = sorted(set(models) - set(MODELS)) + sorted(set(feeds) - {"real", "synthetic"})
    if wrong or args.resnet50_batch < 2:
        raise SystemExit(f"error: unknown model or feed: {', '.join(wrong)}" if wrong else "error: --resnet50-batch must be at least 2")
    batch = {**MODELS, "resnet50": args.resnet50_batch}
    table = load_dataset(args.data)
    paths = select(table, make_split(table), "train")["path"].tolist()
    rows = []
    for backend in models:
        n = args.resnet50_images or (160 if device.type == "cpu" else len(paths)) if backend == "resnet50" else len(paths)
        n -= n % batch[backend]
        if n < batch[backend]:
            raise SystemExit(f"error: {backend}: {n} training images, fewer than one batch of {batch[backend]}")
        for amp, resolved in amps:
            for feed in feeds:
                value = throughput(backend, device, resolved, feed == "synthetic", paths[:n], batch[backend], args.input_size)
                rows.append({"model": backend, "device": str(device), "amp": amp, "feed": feed, "batch_size": batch[backend],
                             "input_size": args.input_size or get_backend(backend).input_size, "images": n, "img_per_s": value,
                             "epoch_s": len(paths) / value})
                print(json.dumps(rows[-1]), flush=True)
    speed = {(r["model"], r["amp"], r["feed"]): r["img_per_s"] for r in rows}
    pipeline = [{"model": m, "amp": a, "real_over_synthetic": speed[m, a, "real"] / speed[m, a, "synthetic"]}
                for (m, a, f) in speed if f == "real" and (m, a, "synthetic") in speed]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {os.cpu_count()} cores"
    print(f"\n{name}\n\n| model | amp | feed | batch | img/s | epoch of {len(paths)} (s) |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['amp']} | {r['feed']} | {r['batch_size']} | {r['img_per_s']:.1f} | {r['epoch_s']:.1f} |")
    if args.json:
        args.json.write_text(json.dumps({"device": name, "torch": torch.__version__, "rows": rows, "pipeline": pipeline}, indent=2) + "\n")


if __name__ == "__main__":
    main()
