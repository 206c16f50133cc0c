"""The default model's speed against the card's CNN (issue #24), in one run of one machine:

- cold start: a fresh `dermcli predict examples/ISIC_0026531.jpg` process, the default and `--model cnn`
  alternating round by round (so that load from other work slows both alike), after one untimed call of each
  that fills the caches; medians and their ratio (bar: at most 1.5);
- the floor: each model's first network call on the example's views in a fresh process (graph loaded, image
  decoded, untimed), which no loading or import work can hide; the default's cold start is at least the CNN's
  with the CNN's call swapped for its own;
- eval throughput: images/s of each shipped model through ONNX Runtime as `dermcli eval` runs it, with all its
  views (the default: two networks x 8 views), on the first N HAM10000 images decoded beforehand.

    python benchmarks/default_speed.py --data ../shared/data/ham10000 --json benchmarks/default_speed.json
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import REPO, cold, image_paths  # noqa: E402

EXAMPLE = str(REPO / "examples" / "ISIC_0026531.jpg")
MODELS = {"default (lite0)": [], "default, --tta none": ["--tta", "none"], "cnn": ["--model", "cnn"]}


def cold_starts(runs: int) -> dict:
    command = [sys.executable, "-m", "dermcli", "predict", EXAMPLE]
    for extra in MODELS.values():
        cold([*command, *extra], repeats=1)  # caches filled, files in the page cache
    times = {name: [] for name in MODELS}
    for r in range(runs):
        for name, extra in (MODELS.items() if r % 2 == 0 else reversed(MODELS.items())):
            times[name].append(cold([*command, *extra], repeats=1)["median_s"])
    medians = {name: statistics.median(t) for name, t in times.items()}
    return {"median_s": medians, "all_s": times,
            "ratio_default_over_cnn": medians["default (lite0)"] / medians["cnn"],
            "ratio_default_tta_none_over_cnn": medians["default, --tta none"] / medians["cnn"]}


FIRST_CALL = """
import sys, time
from dermcli.data.images import decode_rgb
from dermcli.inference.loading import load_runner
from dermcli.inference.predict import SHIPPED, default_tta, input_resolution
from dermcli.inference.tta import view_outputs
runner = load_runner(SHIPPED[sys.argv[1]], "onnx")
resolution = input_resolution(runner.meta, False, lambda msg: None, SHIPPED[sys.argv[1]])  # stdout is the figure
image = decode_rgb(sys.argv[2], runner.meta["input_size"], resolution)[0][None]
start = time.perf_counter()
view_outputs(runner, image, default_tta(sys.argv[3] if len(sys.argv) > 3 else None, runner.meta))
print(time.perf_counter() - start)
"""


def first_calls(runs: int) -> dict:
    """Median seconds of each model's first network call on the example's views, a fresh process each time."""
    calls = {"default (lite0)": ["lite0"], "default, --tta none": ["lite0", "none"], "cnn": ["cnn"]}
    seconds = {name: [] for name in calls}
    for _ in range(runs):
        for name, args in calls.items():
            out = subprocess.run([sys.executable, "-c", FIRST_CALL, args[0], EXAMPLE, *args[1:]], capture_output=True, text=True, check=True)
            seconds[name].append(float(out.stdout))
    return {name: statistics.median(s) for name, s in seconds.items()}


def floor(cold_start: dict, first_call: dict) -> dict:
    """The default's cold start if all but its network call cost what the CNN's do, over the CNN's."""
    cnn = cold_start["median_s"]["cnn"]
    return {name: (cnn - first_call["cnn"] + first_call[name]) / cnn for name in ("default (lite0)", "default, --tta none")}


def eval_throughput(data: Path, n: int) -> dict:
    from dermcli.data.cache import cached_images
    from dermcli.inference.loading import load_runner
    from dermcli.inference.predict import SHIPPED, default_tta
    from dermcli.inference.tta import predict_scored, tta_views

    paths, rows = image_paths(data, n), {}
    for model in ("lite0", "cnn", "resnet50"):
        runner = load_runner(SHIPPED[model], "onnx")
        images, tta = cached_images(paths, runner.meta["input_size"], use_cache=False), default_tta(None, runner.meta)
        start = time.perf_counter()
        predict_scored(runner, images, tta)
        seconds = time.perf_counter() - start
        views = len(tta_views(images[:1], tta))
        rows[model] = {"images": len(paths), "views": views, "img_per_s": len(paths) / seconds, "image_views_per_s": len(paths) * views / seconds}
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "ham10000")
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument("--images", type=int, default=320)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    result = {"cpu_count": os.cpu_count(), "load_average_at_start": os.getloadavg()[0], "cold_start": cold_starts(args.runs),
              "first_call_s": first_calls(args.runs)}
    result["ratio_floor"] = floor(result["cold_start"], result["first_call_s"])
    result |= {"eval": eval_throughput(args.data, args.images), "load_average_at_end": os.getloadavg()[0]}
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
