"""A plain folder of class sub-folders (akiec/, bcc/, ...); each image is its own lesion group."""

from pathlib import Path

import pandas as pd

from dermcli.core.errors import DermcliError
from dermcli.core.labels import CLASSES
from dermcli.data.images import IMAGE_SUFFIXES


def has_class_folders(path: Path) -> bool:
    return any((Path(path) / c).is_dir() for c in CLASSES)


def load(path: Path) -> pd.DataFrame:
    path = Path(path)
    unknown = sorted(p.name for p in path.iterdir() if p.is_dir() and p.name not in CLASSES and not p.name.startswith("."))
    if unknown:
        raise DermcliError(f"{path}: unknown class folder(s) {', '.join(unknown)} (expected {', '.join(CLASSES)})")
    rows = []
    for dx in CLASSES:
        for p in sorted((path / dx).rglob("*")) if (path / dx).is_dir() else []:
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
                image_id = str(p.relative_to(path).with_suffix(""))
                rows.append((image_id, image_id, dx, str(p)))
    table = pd.DataFrame(rows, columns=["image_id", "lesion_id", "dx", "path"])
    if table.empty:
        raise DermcliError(f"{path}: no images in the class folders")
    return table
