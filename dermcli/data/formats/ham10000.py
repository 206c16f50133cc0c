"""HAM10000 in its Kaggle layout: HAM10000_metadata.csv with the JPEGs anywhere below the folder."""

from pathlib import Path

import pandas as pd

from dermcli.core.errors import DermcliError
from dermcli.core.labels import CLASSES
from dermcli.data.tables import attach_paths, check_unique_ids, read_csv

METADATA_NAME = "HAM10000_metadata.csv"
REQUIRED = ("lesion_id", "image_id", "dx")


def load(path: Path) -> pd.DataFrame:
    path = Path(path)
    csv = path if path.is_file() else path / METADATA_NAME
    table = read_csv(csv)
    absent = [c for c in REQUIRED if c not in table.columns]
    if absent:
        raise DermcliError(f"{csv}: missing column(s) {', '.join(absent)}")
    for column in REQUIRED:
        empty = table.index[table[column].str.strip() == ""]
        if len(empty):
            raise DermcliError(f"{csv}: row {empty[0] + 2}: empty {column}")
    unknown = table.index[~table["dx"].isin(CLASSES)]
    if len(unknown):
        row = unknown[0]
        raise DermcliError(f"{csv}: row {row + 2}: unknown dx label {table.at[row, 'dx']!r} (expected one of {', '.join(CLASSES)})")
    check_unique_ids(table, csv)
    return attach_paths(table, csv.parent, csv)
