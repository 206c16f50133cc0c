"""Data sets as one table: image_id, lesion_id, dx, path (one row per image).

The format is detected from what the path holds:
- HAM10000: a folder with HAM10000_metadata.csv (or the CSV itself), JPEGs anywhere below;
- ISIC challenge ground truth: a CSV with columns image,MEL,NV,BCC,AKIEC,BKL,DF,VASC (or a folder holding one);
- class folders: a folder whose sub-folders are named after the classes.
"""

from pathlib import Path

import pandas as pd

from dermcli.core.errors import DermcliError
from dermcli.data.formats import folders, ham10000, isic
from dermcli.data.tables import COLUMNS, METADATA


def detect_format(path: Path) -> str:
    path = Path(path)
    if not path.exists():
        raise DermcliError(f"{path}: no such file or folder")
    if path.is_file():
        if path.name == ham10000.METADATA_NAME:
            return "ham10000"
        if path.suffix.lower() == ".csv":
            return "isic"
        raise DermcliError(f"{path}: expected a folder or a CSV file")
    if (path / ham10000.METADATA_NAME).is_file():
        return "ham10000"
    if isic.find_ground_truth_csv(path) is not None:
        return "isic"
    if folders.has_class_folders(path):
        return "folders"
    raise DermcliError(
        f"{path}: no HAM10000_metadata.csv, ISIC ground-truth CSV or class sub-folders (akiec/, bcc/, ...) found"
    )


def load_dataset(path: Path, images: Path | None = None) -> pd.DataFrame:
    """Load any supported layout; every listed image exists on disk."""
    path = Path(path)
    kind = detect_format(path)
    if kind == "ham10000":
        table = ham10000.load(path)
    elif kind == "isic":
        table = isic.load(path, images)
    else:
        table = folders.load(path)
    if table.empty:
        raise DermcliError(f"{path}: the data set lists no images")
    return table[COLUMNS + [c for c in METADATA if c in table.columns]].reset_index(drop=True)
