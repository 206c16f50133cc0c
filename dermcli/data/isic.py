"""ISIC challenge ground truth: a one-hot CSV (image,MEL,NV,BCC,AKIEC,BKL,DF,VASC) plus a folder of images.

External test sets ship this way. There are no lesion ids: each image is its own group.
"""

from pathlib import Path

import numpy as np
import pandas as pd

from dermcli.data.dataset import attach_paths, check_unique_ids, read_csv
from dermcli.errors import DermcliError
from dermcli.labels import CLASSES

ONE_HOT_COLUMNS = tuple(c.upper() for c in CLASSES)


def _is_ground_truth(csv: Path) -> bool:
    try:
        header = csv.open(encoding="utf-8", errors="replace").readline().strip().split(",")
    except OSError:
        return False
    return "image" in header and set(ONE_HOT_COLUMNS) <= set(header)


def find_ground_truth_csv(folder: Path) -> Path | None:
    for csv in sorted(Path(folder).glob("*.csv")):
        if _is_ground_truth(csv):
            return csv
    return None


def load(path: Path, images: Path | None = None) -> pd.DataFrame:
    path = Path(path)
    csv = path if path.is_file() else find_ground_truth_csv(path)
    table = read_csv(csv)
    absent = [c for c in ("image",) + ONE_HOT_COLUMNS if c not in table.columns]
    if absent:
        raise DermcliError(f"{csv}: missing column(s) {', '.join(absent)}")
    try:
        onehot = table[list(ONE_HOT_COLUMNS)].astype(float).to_numpy()
    except ValueError:
        raise DermcliError(f"{csv}: class columns must be numbers (0 or 1)") from None
    bad = np.flatnonzero(~(np.isin(onehot, (0.0, 1.0)).all(axis=1) & (onehot.sum(axis=1) == 1)))
    if len(bad):
        raise DermcliError(f"{csv}: row {bad[0] + 2}: labels are not one-hot (exactly one class must be 1)")
    table = pd.DataFrame(
        {
            "image_id": table["image"].str.strip(),
            "lesion_id": table["image"].str.strip(),
            "dx": [CLASSES[i] for i in onehot.argmax(axis=1)],
        }
    )
    check_unique_ids(table, csv)
    return attach_paths(table, Path(images) if images else csv.parent, csv)
