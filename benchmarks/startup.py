"""Start-up of whole `dermcli` processes, this checkout against another (e.g. the commit before a change):

    git worktree add /tmp/before COMMIT && python benchmarks/startup.py --other /tmp/before [--runs 9]

Each command runs alternately from both checkouts (PYTHONPATH and working folder set to each), after one untimed
call that fills the caches (the ONNX export of the shipped CNN), and the medians of the wall times are printed
as JSON: `--help`, and `predict` of a bundled example with the shipped CNN.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
COMMANDS = {"--help": ["--help"], "predict --model cnn": ["predict", "examples/ISIC_0026531.jpg", "--model", "cnn"]}


def wall(checkout: Path, args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "dermcli", *args], cwd=checkout, env={**os.environ, "PYTHONPATH": str(checkout)},
                   capture_output=True, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--other", type=Path, required=True, help="the checkout to compare with")
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    checkouts = {"this": REPO, "other": args.other.resolve()}
    result = {}
    for name, command in COMMANDS.items():
        times = {k: [] for k in checkouts}
        for checkout in checkouts.values():
            wall(checkout, command)  # caches filled, imports in the page cache
        for _ in range(args.runs):
            for key, checkout in checkouts.items():
                times[key].append(wall(checkout, command))
        result[name] = {k: round(statistics.median(v), 3) for k, v in times.items()}
    print(json.dumps({"runs": args.runs, "median_seconds": result}, indent=2))


if __name__ == "__main__":
    main()
