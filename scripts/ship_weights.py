"""Copy a finished run's best.pt into weights/ (optionally in fp16) with the run files its card needs.

    python scripts/ship_weights.py RUN_DIR weights/NAME [--half]

writes weights/NAME.pt and weights/NAME/{split.csv,history.csv,config.json}.
"""

import argparse
import shutil
from pathlib import Path

from dermcli.checkpoint import build_model, read_checkpoint, save_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("target", type=Path, help="weights/NAME, without .pt")
    parser.add_argument("--half", action="store_true", help="store floating tensors in fp16")
    args = parser.parse_args()
    best = read_checkpoint(args.run / "best.pt")
    model = build_model(best["meta"], best["state_dict"])
    save_checkpoint(args.target.with_suffix(".pt"), model, best["meta"], half=args.half)
    args.target.mkdir(parents=True, exist_ok=True)
    for name in ("split.csv", "history.csv", "config.json"):
        shutil.copyfile(args.run / name, args.target / name)


if __name__ == "__main__":
    main()
