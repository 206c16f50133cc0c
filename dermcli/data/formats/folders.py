"""A folder of class sub-folders of any names (akiec/, bcc/, ... or benign/ and malignant/); each image is its
own group. Hidden folders are skipped."""

from pathlib import Path

import pandas as pd

from dermcli.core.errors import DermcliError
from dermcli.data.images import IMAGE_SUFFIXES

NAME = "folders"


def class_folders(path: Path) -> list[Path]:
    return sorted(p for p in Path(path).iterdir() if p.is_dir() and not p.name.startswith("."))


def detect(path: Path) -> bool:
    """Sub-folders holding images, and no CSV beside them (a CSV there is a layout's table, read or refused as one)."""
    return path.is_dir() and not any(path.glob("*.csv")) and any(next(_images(folder), None) for folder in class_folders(path))


def _images(folder: Path):
    return (p for p in sorted(folder.rglob("*")) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def load(source) -> pd.DataFrame:
    path = Path(source.path)
    rows = []
    for folder in class_folders(path):
        for p in _images(folder):
            image_id = str(p.relative_to(path).with_suffix(""))
            rows.append((image_id, image_id, folder.name, str(p)))
    table = pd.DataFrame(rows, columns=["image_id", "lesion_id", "dx", "path"])
    if table.empty:
        raise DermcliError(f"{path}: no images in the class folders")
    return table
