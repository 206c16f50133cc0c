"""ISIC challenge ground truth as a one-hot CSV, `image` plus one column per class: ISIC 2018 Task 3
(MEL,NV,BCC,AKIEC,BKL,DF,VASC) and ISIC 2019 Task 1 (MEL,NV,BCC,AK,BKL,DF,VASC,SCC,UNK; 1.0/0.0), with the
images below the CSV's folder (ISIC_2019_Training_Input/). ISIC 2019's metadata CSV beside it names lesions;
without it each image is its own group. UNK has no training images and is not a class to learn:
training refuses it; an eval leaves its images out, as labels the model does not know.
"""

from pathlib import Path

import numpy as np
import pandas as pd

from dermcli.core.errors import DermcliError
from dermcli.data.tables import METADATA, METADATA_ALIASES, attach_paths, check_unique_ids, group_ids, read_csv, read_header

NAME = "isic"
NOT_A_CLASS = ("UNK",)  # ISIC 2019's "none of the others": no training image carries it; its test set's do (eval leaves them out)
LABEL_COLUMNS = ("MEL", "NV", "BCC", "AKIEC", "AK", "BKL", "DF", "VASC", "SCC", "UNK")


def _is_ground_truth(csv: Path) -> bool:
    header = read_header(csv)
    return "image" in header and len(set(header) & set(LABEL_COLUMNS)) >= 2


def find_ground_truth_csv(folder: Path) -> Path | None:
    return next((csv for csv in sorted(Path(folder).glob("*.csv")) if _is_ground_truth(csv)), None)


def detect(path: Path) -> bool:
    return _is_ground_truth(path) if path.is_file() else find_ground_truth_csv(path) is not None


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


def one_hot_labels(table: pd.DataFrame, columns: list[str], csv: Path) -> list[str]:
    """Each row's class: the one column holding 1 (a row with none or several is refused, naming its line)."""
    try:
        onehot = table[columns].astype(float).to_numpy()
    except ValueError:
        raise DermcliError(f"{csv}: class columns must be numbers (0 or 1)") from None
    bad = np.flatnonzero(~(np.isin(onehot, (0.0, 1.0)).all(axis=1) & (onehot.sum(axis=1) == 1)))
    if len(bad):
        raise DermcliError(f"{csv}: row {bad[0] + 2}: labels are not one-hot (exactly one class must be 1)")
    return [columns[i] for i in onehot.argmax(axis=1)]


def load(source) -> pd.DataFrame:
    path = Path(source.path)
    csv = path if path.is_file() else find_ground_truth_csv(path)
    table = read_csv(csv)
    columns = [c for c in table.columns if c in LABEL_COLUMNS]
    labels = pd.DataFrame({"image_id": table["image"].str.strip(), "dx": one_hot_labels(table, columns, csv)})
    meta = metadata(csv, table)
    table = labels.merge(meta, on="image_id", how="left") if meta is not None else labels
    table["lesion_id"] = group_ids(table, "lesion_id")
    check_unique_ids(table, csv)
    return attach_paths(table, Path(source.images) if source.images else csv.parent, csv)
