"""Give trained weights the out-of-distribution statistics of dermcli.ood without retraining:

    python scripts/fit_ood.py weights/NAME.pt [--data ../shared/data/ham10000]

fits them on the run's own training split (weights/NAME/split.csv, or split.csv beside the weights), sets the
threshold on its validation split and rewrites the file atomically. The weights themselves are not touched,
so predictions do not change.
"""

import argparse
from pathlib import Path

from dermcli import PROJECT_ROOT
from dermcli.training.unusual import add_statistics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", type=Path, nargs="+")
    parser.add_argument("--data", type=Path, default=PROJECT_ROOT.parent / "shared" / "data" / "ham10000")
    args = parser.parse_args()
    for weights in args.weights:
        added = add_statistics(weights, args.data)
        print(f"{weights}: distance threshold {added['ood_threshold']:.3f} ({added['ood_pass_rate']:.0%} of validation below)")


if __name__ == "__main__":
    main()
