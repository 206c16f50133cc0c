"""`dermcli serve` under load, against `predict` on the same images and the ONNX Runtime forward pass alone:

    python benchmarks/serve.py [--models cnn lite0:200:400] [--requests 500] [--concurrency 8] [--soak 1000]

For each model (NAME, or NAME:REQUESTS:SOAK to scale one down), a real server on a free localhost port gets the
bundled examples in turn from CONCURRENCY clients: a load of REQUESTS (latency p50/p99, requests per second, errors),
then a soak of SOAK more with the server's RSS read every 100 requests. The same images then go through
`dermcli predict IMAGE` (a whole process each, as a script calling the CLI pays), `predict()` in-process (the
checkpoint loaded each call, as one CLI call does) and the runner's calibrated forward pass with the model's
--tta views on the decoded image (the floor: no HTTP, no decoding). Writes benchmarks/serve.json.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.served import EXAMPLES, cli_env, dermcli_command, serving


def rss_mb(pid: int) -> float:
    line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("VmRSS:"))
    return round(int(line.split()[1]) / 1024, 1)


def percentiles(seconds: list[float]) -> dict:
    ordered = sorted(seconds)
    return {"p50_ms": round(1000 * statistics.median(ordered), 2), "p99_ms": round(1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 2)}


def hammer(server, count: int, concurrency: int) -> dict:
    """`count` predictions of the examples in turn from `concurrency` clients: latencies, throughput, errors."""
    def one(i):
        start = time.perf_counter()
        status, _ = server.predict(EXAMPLES[i % len(EXAMPLES)])
        return status, time.perf_counter() - start

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(one, range(count)))
    wall = time.perf_counter() - start
    return {"requests": count, "concurrency": concurrency, "errors": sum(status != 200 for status, _ in results),
            **percentiles([t for _, t in results]), "requests_per_s": round(count / wall, 1)}


def soak(server, count: int, concurrency: int) -> dict:
    rss, errors = [rss_mb(server.process.pid)], 0
    for done in range(0, count, 100):
        errors += hammer(server, min(100, count - done), concurrency)["errors"]
        rss.append(rss_mb(server.process.pid))
    return {"requests": count, "errors": errors, "rss_mb_every_100": rss, "rss_growth_mb": round(rss[-1] - rss[0], 1)}


def predict_baselines(model: str, cache: Path, runs: int) -> dict:
    """The same images through `dermcli predict` (a process each), predict() in-process, and the forward pass alone."""
    import numpy as np

    from dermcli.data.images import decode_rgb
    from dermcli.inference.loading import load_runner
    from dermcli.inference.predict import default_tta, default_weights, input_resolution, predict
    from dermcli.inference.tta import predict_scored

    def timed(work, items):
        seconds = []
        for item in items:
            start = time.perf_counter()
            work(item)
            seconds.append(time.perf_counter() - start)
        return percentiles(seconds)

    images = [EXAMPLES[i % len(EXAMPLES)] for i in range(runs)]
    cli = timed(lambda path: subprocess.run(dermcli_command("predict", str(path), "--model", model), cwd=REPO, env=cli_env(cache),
                                            capture_output=True, check=True), images)
    in_process = timed(lambda path: predict([str(path)], model=model), images)
    weights = default_weights(model)
    runner = load_runner(weights)
    meta, tta = runner.meta, default_tta(None, runner.meta)
    decoded = [decode_rgb(p, meta["input_size"], input_resolution(meta, False, lambda m: None, weights))[0][None] for p in images]
    floor = timed(lambda image: predict_scored(runner, np.ascontiguousarray(image), tta), decoded)
    return {"dermcli_predict_process": cli, "predict_in_process": in_process, f"forward_pass_{tta}": floor}


def measure(entry: str, args, cache: Path) -> dict:
    model, *counts = entry.split(":")
    requests, soak_count = (int(counts[0]), int(counts[1])) if counts else (args.requests, args.soak)
    with serving("--model", model, cache=cache) as server:
        for i in range(20):  # warm-up: caches, arenas and the allocator settle
            server.predict(EXAMPLES[i % len(EXAMPLES)])
        rss_start = rss_mb(server.process.pid)
        load = hammer(server, requests, args.concurrency)
        soaked = soak(server, soak_count, args.concurrency)
    return {"serve_load": {**load, "rss_mb_before": rss_start}, "serve_soak": soaked,
            "baselines": predict_baselines(model, cache, args.baseline_runs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["cnn", "lite0"])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--soak", type=int, default=1000)
    parser.add_argument("--baseline-runs", type=int, default=14, help="images timed per baseline (the examples in turn)")
    parser.add_argument("--note", default="", help="conditions worth recording (e.g. other work sharing the cores)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "serve.json")
    args = parser.parse_args()
    cache = Path(os.environ.get("DERMCLI_CACHE_DIR", Path.home() / ".cache" / "dermcli"))
    load_before = os.getloadavg()[0]
    result = {"cpus": os.cpu_count(), "load_average_at_start": round(load_before, 2), "note": args.note,
              "models": {entry.split(":")[0]: measure(entry, args, cache) for entry in args.models}}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
