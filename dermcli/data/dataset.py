"""Data sets as one table: image_id, lesion_id, dx, path (one row per image).

The format is detected from what the path holds:
- HAM10000: a folder with HAM10000_metadata.csv (or the CSV itself), JPEGs anywhere below;
- ISIC challenge ground truth: a CSV with columns image,MEL,NV,BCC,AKIEC,BKL,DF,VASC (or a folder holding one);
- class folders: a folder whose sub-folders are named after the classes.
"""

from pathlib import Path

import pandas as pd

from dermcli.errors import DermcliError

COLUMNS = ["image_id", "lesion_id", "dx", "path"]
# Per-image metadata kept when a data set has it (HAM10000's own columns), for subgroup reports.
METADATA = ["sex", "age", "localization", "dx_type"]
# ISIC's names for the same columns.
METADATA_ALIASES = {"age_approx": "age", "anatom_site_general": "localization", "anatom_site_general_challenge": "localization"}


def detect_format(path: Path) -> str:
    from dermcli.data import folders, ham10000, isic

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
    from dermcli.data import folders, ham10000, isic

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


def index_images(root: Path) -> dict[str, Path]:
    """Map image stem -> path for every image file below `root` (so CSV names never become paths)."""
    from dermcli.data.images import IMAGE_SUFFIXES

    index: dict[str, Path] = {}
    for p in sorted(Path(root).rglob("*")):
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file():
            index.setdefault(p.stem, p)
    return index


def attach_paths(table: pd.DataFrame, root: Path, source: Path, row_offset: int = 2) -> pd.DataFrame:
    """Add a `path` column by looking each image_id up among the files below `root`.

    Image ids are looked up, never joined onto a path, so an id like ../../etc/passwd cannot escape `root`.
    `row_offset` turns a table index into the CSV line number shown in errors (header on line 1).
    """
    index = index_images(root)
    paths = table["image_id"].map(index)
    missing = table.index[paths.isna()]
    if len(missing):
        first = missing[0]
        raise DermcliError(
            f"{source}: row {first + row_offset}: image {table.at[first, 'image_id']!r} not found below {root}"
            + (f" ({len(missing)} images missing in all)" if len(missing) > 1 else "")
        )
    return table.assign(path=paths.astype(str))


def check_unique_ids(table: pd.DataFrame, source: Path, row_offset: int = 2) -> None:
    dup = table.index[table["image_id"].duplicated()]
    if len(dup):
        raise DermcliError(f"{source}: row {dup[0] + row_offset}: duplicate image_id {table.at[dup[0], 'image_id']!r}")


def read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DermcliError(f"{path}: malformed CSV ({str(e).splitlines()[0]})") from None
    except OSError as e:
        raise DermcliError(f"{path}: cannot read ({e.strerror or e})") from None
