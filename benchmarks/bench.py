"""dermcli speed benchmark on real HAM10000 images (not part of CI; about 8 minutes on 2 cores).

    python benchmarks/bench.py --data ../shared/data/ham10000 --json benchmarks/results.json
    python benchmarks/bench.py --only reports:write     # one measurement, printed as JSON
    python benchmarks/bench.py --only cold-predict:lite0   # cold `dermcli predict` of a shipped model
    python benchmarks/bench.py --backbones resnet18,efficientnet_b0 --json benchmarks/backbones.json

Each measurement runs in its own process, so its peak memory (max RSS) is its own. "plain" is the way
the model cards' scripts work: a per-image Dataset that decodes JPEGs every time, NCHW, no_grad, batch 32.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dermcli.inference.predict import SHIPPED  # --model name -> shipped weights

REPO = Path(__file__).resolve().parent.parent


def weights_for(backend: str, workdir: Path) -> Path:
    """The shipped weights, or an untrained checkpoint of the same shape (speed does not depend on values)."""
    if backend in SHIPPED and SHIPPED[backend].is_file():
        return SHIPPED[backend]
    from dermcli.core.labels import class_names
    from dermcli.models.checkpoint import num_outputs, save_checkpoint
    from dermcli.models.registry import get_backend

    b = get_backend(backend)
    path = workdir / f"{backend.replace('/', '_')}.pt"
    task = b.default_task
    save_checkpoint(path, b.build(num_outputs(task), {}), {"backend": backend, "task": task, "class_names": list(class_names(task)),
                    "input_size": b.input_size, "preprocessing": b.default_preprocessing, "model_options": {}, "threshold": 0.5, "temperature": 1.0})
    return path


def image_paths(data: Path, n: int) -> list[str]:
    from dermcli.data.dataset import load_dataset

    return load_dataset(data)["path"].tolist()[:n]


def plain_eval(backend: str, weights: Path, paths: list[str]) -> float:
    """img/s of the cards' way: PIL decode per image inside a Dataset, NCHW float, no_grad, batch 32."""
    import torch
    from PIL import Image

    from dermcli.data.transforms import normalize
    from dermcli.models.loading import load_model

    model, meta = load_model(weights)
    size = meta["input_size"]

    class Images(torch.utils.data.Dataset):
        def __len__(self):
            return len(paths)

        def __getitem__(self, i):
            import numpy as np

            img = np.asarray(Image.open(paths[i]).convert("RGB").resize((size, size)))[None]
            return torch.from_numpy(normalize(img, meta["preprocessing"])[0])

    start = time.perf_counter()
    with torch.no_grad():
        for batch in torch.utils.data.DataLoader(Images(), batch_size=32):
            model(batch)
    return len(paths) / (time.perf_counter() - start)


def dermcli_eval(engine: str, weights: Path, paths: list[str]) -> float:
    """img/s of dermcli's eval path: decode into the cache (cold), then the engine over all images."""
    from dermcli.data.cache import cached_images
    from dermcli.inference.loading import load_runner

    runner = load_runner(weights, engine)
    start = time.perf_counter()
    runner.logits(cached_images(paths, runner.meta["input_size"], use_cache=False), batch_size=32)
    return len(paths) / (time.perf_counter() - start)


def train_epoch(backend: str, freeze: str, plain: bool, data: Path, limit: int | None) -> dict:
    """Seconds for one training epoch over the train split (extrapolated from `limit` images when given).

    plain: decoding counts in every epoch. cached: decoding (and the frozen features) are a one-time
    cost, reported apart as `once_s`.
    """
    import numpy as np
    import torch

    from dermcli.data.batches import ImageBatches, channels_last
    from dermcli.data.cache import cached_images
    from dermcli.data.dataset import load_dataset
    from dermcli.data.split import make_split, select
    from dermcli.models.registry import get_backend
    from dermcli.training.features import frozen_features
    from dermcli.training.loop import train_one_epoch

    table = load_dataset(data)
    rows = select(table, make_split(table), "train")
    n_train = len(rows)
    rows = rows.iloc[:limit] if limit else rows
    b = get_backend(backend)
    model = b.build(7 if backend == "cnn" else 1, {})
    frozen, trainable = b.split_frozen(model, freeze)
    y = torch.randint(0, 7 if backend == "cnn" else 2, (len(rows),))
    loss = card_loss(backend)
    optimizer = torch.optim.AdamW([p for p in trainable.parameters() if p.requires_grad])
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    if plain:
        from dermcli.data.cache import decode_images

        batches = ImageBatches(decode_images(rows["path"].tolist(), b.input_size), b.default_preprocessing, augment="dihedral")
    else:
        pixels = cached_images(rows["path"].tolist(), b.input_size)
        batches = ImageBatches(pixels, b.default_preprocessing, augment="dihedral")
        if freeze != "none":
            batches = frozen_features(frozen, pixels, b.default_preprocessing, flips=False)
    setup = time.perf_counter() - start
    batch_size = 32 if backend != "cnn" else 128
    warm_up = np.arange(batch_size)  # one step first: oneDNN's per-shape set-up is not a per-epoch cost
    loss(trainable(channels_last(batches.get(warm_up))), y[warm_up], y[warm_up]).backward()
    optimizer.zero_grad()
    start = time.perf_counter()
    train_one_epoch(trainable, batches, y, loss, optimizer, rng, batch_size)
    seconds = time.perf_counter() - start
    scale = n_train / len(rows)
    return {"epoch_s": (seconds + setup) * scale} if plain else {"epoch_s": seconds * scale, "once_s": setup * scale}


REPORT_SOURCE = REPO / "weights" / "cnn_ham10000_7class" / "eval"  # 1,502 test images with HAM10000's metadata


def report_writing() -> dict:
    """Seconds to write every report, plot and the subgroup audit of a 1,502-image eval, in a process that has
    numpy and pandas loaded (as `eval` has when it gets there); the imports the reports need count."""
    import shutil

    import numpy  # noqa: F401
    import pandas  # noqa: F401

    folder = Path(tempfile.mkdtemp()) / "eval"
    shutil.copytree(REPORT_SOURCE, folder)
    start = time.perf_counter()
    from dermcli.evaluation.report import write_reports

    write_reports(folder)
    return {"report_s": time.perf_counter() - start}


def measure(name: str, args: argparse.Namespace) -> dict:
    if name.startswith("backbone:"):  # ONNX Runtime eval throughput of an untrained backbone at its default input size
        from dermcli.models.loading import load_model

        weights = weights_for(name.partition(":")[2], Path(tempfile.mkdtemp()))
        parameters = sum(p.numel() for p in load_model(weights)[0].parameters())
        return {"img_per_s": dermcli_eval("onnx", weights, image_paths(args.data, args.images)), "parameters_m": parameters / 1e6,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if name.startswith("cold-predict:"):  # e.g. cold-predict:lite0 (a shipped --model name), ONNX Runtime
        return cold_predict(weights_for(name.partition(":")[2], Path(tempfile.mkdtemp())), ["onnx"])["onnx"]
    if name == "reports:write":
        return {**report_writing(), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    workdir = Path(tempfile.mkdtemp())
    backend, _, rest = name.partition(":")
    paths = image_paths(args.data, args.images)
    if rest == "plain-eval":
        value = {"img_per_s": plain_eval(backend, weights_for(backend, workdir), paths)}
    elif rest.startswith("eval-"):
        value = {"img_per_s": dermcli_eval(rest[5:], weights_for(backend, workdir), paths)}
    else:  # train-<freeze>-<plain|cached>
        _, freeze, how = rest.split("-")
        limit = None if backend == "cnn" else args.train_images
        value = train_epoch(backend, freeze, how == "plain", args.data, limit)
    return {**value, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def in_subprocess(name: str, args: argparse.Namespace) -> dict:
    out = subprocess.run([sys.executable, __file__, "--only", name, "--data", str(args.data), "--images", str(args.images),
                          "--train-images", str(args.train_images)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def cold(cmd: list[str], repeats: int = 5) -> dict:
    """Median wall time of a fresh process, and its own peak memory (wait4's rusage of that child)."""
    times, peak = [], 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(process.pid, 0)
        times.append(time.perf_counter() - start)
        if os.waitstatus_to_exitcode(status):  # a command that failed fast is not a fast cold start
            raise SystemExit(f"{' '.join(cmd)} exited with {os.waitstatus_to_exitcode(status)}")
        peak = max(peak, usage.ru_maxrss / 1024)
    return {"median_s": statistics.median(times), "peak_rss_mb": peak}


def cold_predict(weights: Path, engines: list[str]) -> dict[str, dict]:
    """cold() of `dermcli predict` on a bundled example per engine, after one call that exports and caches the .onnx."""
    command = [sys.executable, "-m", "dermcli", "predict", str(REPO / "examples" / "ISIC_0026531.jpg"), "--weights", str(weights)]
    subprocess.run(command, capture_output=True)
    return {engine: cold([*command, "--engine", engine]) for engine in engines}


def card_loss(backend: str):
    """The cards' training losses: cross-entropy for the 7-class CNN, BCE on the one logit of a binary model."""
    import torch

    from dermcli.training.objectives import BinaryCrossEntropy, CrossEntropy

    if backend == "cnn":
        return CrossEntropy(torch.ones(7), 0.0)
    return BinaryCrossEntropy(torch.ones(1), 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "ham10000")
    parser.add_argument("--images", type=int, default=320, help="images for the eval throughput runs")
    parser.add_argument("--train-images", type=int, default=320, help="ResNet50 train images timed (the epoch is extrapolated)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--backbones", default=None, help="comma-separated --model names: only their ONNX eval throughput")
    parser.add_argument("--only", default=None, help="run one measurement (e.g. reports:write) and print it as JSON")
    args = parser.parse_args()
    if args.only:
        print(json.dumps(measure(args.only, args)))
        return
    if args.backbones:
        os.environ.setdefault("DERMCLI_CACHE_DIR", tempfile.mkdtemp())
        rows = {name: in_subprocess(f"backbone:{name}", args) for name in args.backbones.split(",")}
        print("\n| backbone | parameters (7-class head) | input | ONNX Runtime eval img/s | peak RSS (MB) |\n|---|---|---|---|---|")
        from dermcli.models.registry import get_backend

        for name, r in rows.items():
            print(f"| `{name}` | {r['parameters_m']:.1f}M | {get_backend(name).input_size} | {r['img_per_s']:.1f} | {r['peak_rss_mb']:.0f} |")
        if args.json:
            args.json.write_text(json.dumps({"backbones": rows, "images": args.images, "cpu_count": os.cpu_count()}, indent=2) + "\n")
        return
    os.environ.setdefault("DERMCLI_CACHE_DIR", tempfile.mkdtemp())
    results: dict[str, dict] = {}
    for name in ["cnn:plain-eval", "cnn:eval-torch", "cnn:eval-onnx", "resnet50:plain-eval", "resnet50:eval-torch", "resnet50:eval-onnx",
                 "cnn:train-none-plain", "cnn:train-none-cached", "resnet50:train-none-plain", "resnet50:train-layer3-cached",
                 "reports:write"]:
        results[name] = in_subprocess(name, args)
        print(name, results[name], flush=True)
    dermcli = [sys.executable, "-m", "dermcli"]
    with tempfile.TemporaryDirectory() as workdir:
        for backend in ("lite0", "cnn", "resnet50"):
            for engine, value in cold_predict(weights_for(backend, Path(workdir)), ["onnx", "torch"]).items():
                results[f"{backend}:cold-predict-{engine}"] = value
                print(backend, engine, value, flush=True)
    with tempfile.TemporaryDirectory() as workdir:
        import shutil

        shutil.copytree(REPORT_SOURCE, Path(workdir) / "eval")
        results["report-cold"] = cold([*dermcli, "report", str(Path(workdir) / "eval")])
    results["help"] = cold([*dermcli, "--help"])
    print("help", results["help"])
    ratios = {f"{b}: {e} eval vs plain": results[f"{b}:eval-{e}"]["img_per_s"] / results[f"{b}:plain-eval"]["img_per_s"]
              for b in ("cnn", "resnet50") for e in ("torch", "onnx")}
    ratios["resnet50: --freeze layer3 epoch vs plain full epoch"] = (results["resnet50:train-none-plain"]["epoch_s"]
                                                                    / results["resnet50:train-layer3-cached"]["epoch_s"])
    ratios["cnn: cached epoch vs plain epoch"] = results["cnn:train-none-plain"]["epoch_s"] / results["cnn:train-none-cached"]["epoch_s"]
    print("\n| measurement | value | peak RSS (MB) |\n|---|---|---|")
    for name, r in results.items():
        unit = {"img_per_s": "img/s", "median_s": "s", "epoch_s": "s per epoch", "once_s": "s once", "report_s": "s"}
        value = ", ".join(f"{v:.2f} {unit[k]}" for k, v in r.items() if k != "peak_rss_mb")
        print(f"| {name} | {value} | {r['peak_rss_mb']:.0f} |")
    for name, ratio in ratios.items():
        print(f"| {name} | {ratio:.2f}x | |")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "ratios": ratios, "cpu_count": os.cpu_count()}, indent=2) + "\n")


if __name__ == "__main__":
    main()
