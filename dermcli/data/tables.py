"""The one table every layout becomes (image_id, lesion_id, dx, path; one row per image), and the helpers that
layouts share to build it from a CSV and a folder of images."""

from pathlib import Path

import pandas as pd

from dermcli.core.errors import DermcliError
from dermcli.data.images import IMAGE_SUFFIXES

COLUMNS = ["image_id", "lesion_id", "dx", "path"]
# Kept when the data set names patients: the split then groups by patient, the strongest id (patient > lesion > image).
PATIENT = "patient_id"
# Per-image metadata kept when a data set has it (HAM10000's own columns), for subgroup reports.
METADATA = ["sex", "age", "localization", "dx_type"]
# ISIC's names for the same columns.
METADATA_ALIASES = {"age_approx": "age", "anatom_site_general": "localization", "anatom_site_general_challenge": "localization"}


def index_images(root: Path) -> dict[str, Path]:
    """Map image stem -> path for every image file below `root` (so CSV names never become paths)."""
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


def required_columns(table: pd.DataFrame, columns, source: Path) -> pd.DataFrame:
    """`table`, once every one of `columns` is present and filled in on every row (else a one-line error naming it)."""
    absent = [c for c in dict.fromkeys(columns) if c not in table.columns]
    if absent:
        raise DermcliError(f"{source}: missing column(s) {', '.join(absent)}")
    for column in dict.fromkeys(columns):
        empty = table.index[table[column].str.strip() == ""]
        if len(empty):
            raise DermcliError(f"{source}: row {empty[0] + 2}: empty {column}")
    return table


def group_ids(table: pd.DataFrame, column: str) -> pd.Series:
    """`column`'s ids where the table has them, else each image its own group."""
    ids = table[column].fillna("").str.strip() if column in table.columns else pd.Series("", index=table.index)
    return ids.where(ids != "", table["image_id"])


def layout_csv(path: Path, name: str) -> Path:
    """A layout's table: the CSV given, or the one of that name in the folder given."""
    return Path(path) if Path(path).is_file() else Path(path) / name


def has_columns(csv: Path, columns) -> bool:
    return set(columns) <= set(read_header(csv))


def read_header(csv: Path) -> list[str]:
    """A CSV's column names, [] when it is not a readable file (detection tries many)."""
    try:
        with Path(csv).open(encoding="utf-8", errors="replace") as f:
            return [c.strip() for c in f.readline().strip().split(",")]
    except OSError:
        return []


def read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DermcliError(f"{path}: malformed CSV ({str(e).splitlines()[0]})") from None
    except OSError as e:
        raise DermcliError(f"{path}: cannot read ({e.strerror or e})") from None
