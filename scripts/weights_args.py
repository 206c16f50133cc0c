"""The command line the scripts that add something to trained weights share: WEIGHTS... [--data DIR]."""

import argparse
from pathlib import Path

from dermcli import PROJECT_ROOT


def weights_and_data(doc: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", type=Path, nargs="+")
    parser.add_argument("--data", type=Path, default=PROJECT_ROOT.parent / "shared" / "data" / "ham10000")
    return parser.parse_args()
