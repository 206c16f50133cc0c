"""ISIC challenge ground truth: a one-hot CSV (image,MEL,NV,BCC,AKIEC,BKL,DF,VASC) plus a folder of images.

External test sets ship this way. There are no lesion ids: each image is its own group.
"""

from pathlib import Path

import numpy as np
import pandas as pd

from dermcli.core.errors import DermcliError
from dermcli.core.labels import CLASSES
from dermcli.data.tables import METADATA, METADATA_ALIASES, attach_paths, check_unique_ids, read_csv

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


def metadata(csv: Path, ground_truth: pd.DataFrame) -> pd.DataFrame | None:
    """sex, age, localization, dx_type and lesion_id per image_id, from the ground-truth CSV's own columns or
    an ISIC metadata CSV beside it (a name with "metadata" and an `image` column), ISIC's names mapped to HAM10000's."""
    wanted = set(METADATA) | {"lesion_id"}
    tables = [ground_truth]
    for candidate in sorted(csv.parent.glob("*.csv")):
        if candidate != csv and "metadata" in candidate.name.lower():
            extra = read_csv(candidate)
            if "image" in extra.columns:
                tables.append(extra)
    merged = None
    for t in tables:
        t = t.rename(columns=METADATA_ALIASES)
        columns = [c for c in t.columns if c in wanted and (merged is None or c not in merged.columns)]
        if columns:
            part = t[["image"] + columns].rename(columns={"image": "image_id"}).assign(image_id=lambda d: d["image_id"].str.strip())
            merged = part if merged is None else merged.merge(part, on="image_id", how="outer")
    return merged


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
    labels = pd.DataFrame({"image_id": table["image"].str.strip(), "dx": [CLASSES[i] for i in onehot.argmax(axis=1)]})
    meta = metadata(csv, table)
    table = labels.merge(meta, on="image_id", how="left") if meta is not None else labels
    # ISIC 2019's metadata names lesions; elsewhere each image is its own group.
    lesion = table["lesion_id"].fillna("").str.strip() if "lesion_id" in table.columns else pd.Series("", index=table.index)
    table["lesion_id"] = lesion.where(lesion != "", table["image_id"])
    check_unique_ids(table, csv)
    return attach_paths(table, Path(images) if images else csv.parent, csv)
