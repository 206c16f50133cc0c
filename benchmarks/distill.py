"""The teacher's pass of `train --teacher` (issue #24): images/s and peak memory of its logits for every
geometric view, made as before the fix (each view of the whole set at once, then the runner over it) and
after it (distill.view_logits: a batch of images at a time through all its views).

    OMP_NUM_THREADS=1 nice -n 19 python benchmarks/distill.py --images 320 --json benchmarks/distill.json

Each figure comes from its own fresh process (so its peak RSS is its own), on the first N training images of
the lesion-level split at the teacher's input size, with the shipped ensemble teacher loaded as training loads
it (load_runner "auto" on the CPU: ONNX Runtime). `runner` is its logits on one view of those images, the cost
of the network alone; `before` and `after` are all 8 dihedral views; all three are timed once the runner is
loaded, and images/s counts every view of every image. Each runs alone (a fresh process) and as in a training
process: torch's threads at the machine's cores (as `train` leaves them, whatever OMP_NUM_THREADS says) and
the student CNN built and stepped first. Rounds alternate the order, so that a machine loaded by other work
slows all alike: compare figures of one run, and CPU ms per image (user + sys), which load changes less than
wall time. Cache files go to a temporary DERMCLI_CACHE_DIR.

`whole_set_view` then times the step that `before` adds to the runner, one view of the whole set, alone at
larger N (--scaling; generated pixels, each after a pause like a runner pass between two views), and scales
it to the whole training split.
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

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # this checkout's dermcli, whichever one is installed
TEACHER = REPO / "weights" / "lite0_ensemble_ham10000_7class.pt"
MODES, STATES = ("runner", "before", "after"), ("alone", "training")


def reset_peak() -> None:
    """Start VmHWM afresh (Linux 4.0+), so that the peak is the timed part's, not that of loading before it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def memory() -> dict:
    """This process's resident set now and its peak since reset_peak (MiB), from /proc."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return {k: int(fields[k].split()[0]) / 1024 for k in ("VmRSS", "VmHWM")}


def cpu() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def like_training(paths: list[str]) -> None:
    """What a training process has done before teacher_logits: torch's threads as train leaves them, the student
    (the CNN at 28 px) built and stepped on its own augmented batches."""
    import torch

    from dermcli.data.batches import ImageBatches
    from dermcli.data.cache import cached_images
    from dermcli.models.registry import get_backend

    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(0)
    model, rng = get_backend("cnn").build(7, {"pretrained": False}), np.random.default_rng(0)
    batches, optimizer = ImageBatches(cached_images(paths, 28), "unit", "dihedral"), torch.optim.AdamW(model.parameters())
    for _ in range(3):
        loss = torch.nn.functional.cross_entropy(model(batches.get(rng.integers(0, len(paths), 64), rng)), torch.zeros(64, dtype=torch.long))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def whole_set_views(runner, images: np.ndarray, views: list[dict], seconds: list) -> np.ndarray:
    """teacher_logits before the fix: each view of the whole set made at once, then the runner over it."""
    from dermcli.training.distill import apply_view

    out = []
    for v in views:
        start = time.perf_counter()
        view = apply_view(images, v)  # of the whole set at once
        seconds.append(time.perf_counter() - start)
        out.append(runner.logits(view))
    return np.stack(out, axis=1)


def child(mode: str, state: str, paths_file: Path, out: Path) -> None:
    """One figure, printed as a JSON line; the logits are saved to `out` for the parent to compare."""
    import torch

    from dermcli.data.cache import cached_images
    from dermcli.inference.loading import load_runner
    from dermcli.training.distill import geometric_views, view_logits

    paths = json.loads(paths_file.read_text())
    if state == "training":
        like_training(paths)
    runner = load_runner(TEACHER, "auto", device="cpu")
    images, views = cached_images(paths, runner.meta["input_size"]), geometric_views("dihedral")
    count, geometry = len(paths) * (1 if mode == "runner" else len(views)), []
    reset_peak()
    before, (user, system), start = memory(), cpu(), time.perf_counter()
    if mode == "runner":
        logits = runner.logits(images)
    else:
        logits = whole_set_views(runner, images, views, geometry) if mode == "before" else view_logits(runner, images, views)
    wall, after, (user_end, system_end) = time.perf_counter() - start, memory(), cpu()
    np.save(out, logits)
    print(json.dumps({"mode": mode, "state": state, "engine": type(runner).__name__, "torch_threads": torch.get_num_threads(),
                      "images": len(paths), "views": count // len(paths), "seconds": wall, "images_per_s": count / wall,
                      "user_s": user_end - user, "sys_s": system_end - system,
                      "cpu_ms_per_image": 1000 * (user_end - user + system_end - system) / count, "peak_rss_mib": after["VmHWM"],
                      "peak_added_mib": max(0.0, after["VmHWM"] - before["VmRSS"]), "whole_set_view_s": geometry}))


def view_child(n: int, pause: float) -> None:
    """One whole-set view of n generated images at 224 as `before` made it, twice, each after `pause` seconds."""
    from dermcli.training.distill import apply_view, geometric_views

    images = np.random.default_rng(0).integers(0, 256, (n, 224, 224, 3), dtype=np.uint8)
    for view in geometric_views("dihedral")[1:3]:
        time.sleep(pause)
        reset_peak()
        before, (user, system), start = memory(), cpu(), time.perf_counter()
        apply_view(images, view)
        wall, after, (user_end, system_end) = time.perf_counter() - start, memory(), cpu()
        print(json.dumps({"images": n, "seconds": wall, "user_s": user_end - user, "sys_s": system_end - system,
                          "ms_per_image": 1000 * wall / n, "peak_added_mib": after["VmHWM"] - before["VmRSS"]}), flush=True)


def run_child(args: list[str], env: dict) -> list[dict]:
    done = subprocess.run([sys.executable, __file__, *args], env=env, cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stderr[-3000:]}")
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    for row in rows:
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items() if k != "whole_set_view_s"}), flush=True)
    return rows


def compared(rows: list[dict], logits: dict) -> dict:
    """Medians over rounds per (mode, state), their ratios side by side, and after's logits against before's."""
    keys = ("images_per_s", "seconds", "user_s", "sys_s", "cpu_ms_per_image", "peak_rss_mib", "peak_added_mib")
    med = {(m, s): {k: statistics.median(r[k] for r in rows if (r["mode"], r["state"]) == (m, s)) for k in keys} for m in MODES for s in STATES}
    rate = {key: v["images_per_s"] for key, v in med.items()}
    ratios = {s: {"before_over_runner": rate["before", s] / rate["runner", s], "after_over_runner": rate["after", s] / rate["runner", s],
                  "after_over_before": rate["after", s] / rate["before", s]} for s in STATES}
    n = rows[0]["images"]
    return {"median": {f"{m}/{s}": v for (m, s), v in med.items()}, "ratios": ratios,
            "before_whole_set_view_s_median": statistics.median(v for r in rows if r["mode"] == "before" for v in r["whole_set_view_s"]),
            "before_minus_after_peak_mib_per_image": statistics.median(med["before", s]["peak_added_mib"] - med["after", s]["peak_added_mib"]
                                                                       for s in STATES) / n,
            "max_abs_logit_difference_after_vs_before": float(max(np.abs(logits["after", s] - logits["before", s]).max() for s in STATES)),
            "max_abs_logit_difference_runner_vs_after_view_0": float(max(np.abs(logits["runner", s] - logits["after", s][:, 0]).max() for s in STATES))}


def scaled(views: list[dict], train_images: int, runner_rate: float) -> dict:
    """The whole-set view at the largest N measured, per image, scaled to the training split; and what `before`
    would then run at, given the runner's rate, if nothing else slowed it (8 views)."""
    largest = [v for v in views if v["images"] == max(v["images"] for v in views)]
    seconds = statistics.median(v["ms_per_image"] for v in largest) / 1000
    mib = statistics.median(v["peak_added_mib"] for v in largest) / largest[0]["images"]
    return {"train_images": train_images, "whole_set_view_s": seconds * train_images, "whole_set_view_gib": mib * train_images / 1024,
            "before_images_per_s": {f"runner at {r:.1f}/s": 1 / (1 / r + seconds) for r in (runner_rate, 41.0)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "ham10000")
    parser.add_argument("--images", type=int, default=320)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--scaling", default="320,1280,2560", help="image counts of the whole-set view alone ('' skips it)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--view-child", nargs=2, type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child or args.view_child:
        return child(args.child[0], args.child[1], Path(args.child[2]), Path(args.child[3])) if args.child else view_child(int(args.view_child[0]), args.view_child[1])
    from dermcli.data.dataset import load_dataset
    from dermcli.data.split import make_split, select

    table = load_dataset(args.data)
    train = select(table, make_split(table), "train")["path"].astype(str).tolist()
    with tempfile.TemporaryDirectory() as tmp:
        folder, env = Path(tmp), {**os.environ, "DERMCLI_CACHE_DIR": tmp, "PYTHONPATH": str(REPO)}
        (folder / "paths.json").write_text(json.dumps(train[:args.images]))
        command = lambda mode, state: ["--child", mode, state, str(folder / "paths.json"), str(folder / f"{mode}_{state}.npy")]  # noqa: E731
        run_child(command("runner", "alone"), env)  # untimed: decodes the images, optimises the ONNX graph once
        rows, logits, order = [], {}, [(m, s) for s in STATES for m in MODES]
        for r in range(args.rounds):
            for mode, state in order if r % 2 == 0 else order[::-1]:
                rows += run_child(command(mode, state), env)
                logits[mode, state] = np.load(folder / f"{mode}_{state}.npy")
        result = {"machine": f"{os.cpu_count()} cores", "teacher": TEACHER.name, "images": len(train[:args.images]), "rounds": args.rounds,
                  **compared(rows, logits)}
        runner_rate = statistics.median(r["images_per_s"] for r in rows if r["mode"] == "runner")
        views = [v for n in filter(None, args.scaling.split(",")) for v in run_child(["--view-child", n, str(int(n) / runner_rate)], env)]
    if views:
        result["whole_set_view"] = {"rows": views, "scaled": scaled(views, len(train), runner_rate)}
    result["load_average_at_end"] = os.getloadavg()[0]
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps({**result, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
