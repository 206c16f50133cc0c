"""HAM10000 in its Kaggle layout: HAM10000_metadata.csv with the JPEGs anywhere below the folder."""

from pathlib import Path

import pandas as pd

from dermcli.data.tables import attach_paths, check_unique_ids, read_csv, required_columns

NAME = "ham10000"
METADATA_NAME = "HAM10000_metadata.csv"
REQUIRED = ("lesion_id", "image_id", "dx")


def detect(path: Path) -> bool:
    return path.name == METADATA_NAME if path.is_file() else (path / METADATA_NAME).is_file()


def load(source) -> pd.DataFrame:
    path = Path(source.path)
    csv = path if path.is_file() else path / METADATA_NAME
    table = required_columns(read_csv(csv), REQUIRED, csv)
    check_unique_ids(table, csv)
    return attach_paths(table, Path(source.images) if source.images else csv.parent, csv)
