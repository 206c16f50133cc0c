"""Any CSV: `--image-column` (file names or ids of the images below the CSV's folder or --images), `--label-column`,
and optionally `--group-column` (lesion or patient ids; without it each image is its own group). Fitzpatrick17k-style
tables and a clinic's own sheet read this way; age, sex and site columns keep HAM10000's names where they have them."""

from pathlib import Path

import pandas as pd

from dermcli.core.errors import DermcliError
from dermcli.data.tables import METADATA, METADATA_ALIASES, attach_paths, check_unique_ids, read_csv, required_columns

NAME = "csv"


def detect(path: Path) -> bool:
    return False  # only by --format csv or --image-column / --label-column


def load(source) -> pd.DataFrame:
    csv = Path(source.path)
    if not csv.is_file() or csv.suffix.lower() != ".csv":
        raise DermcliError(f"{csv}: --format csv reads a CSV file: give its path")
    if not (source.image_column and source.label_column):
        raise DermcliError(f"{csv}: a generic CSV needs --image-column and --label-column")
    group = source.group_column
    table = required_columns(read_csv(csv), (source.image_column, source.label_column) + ((group,) if group else ()), csv)
    out = pd.DataFrame({"image_id": table[source.image_column].str.strip().map(lambda name: Path(name).stem),
                        "dx": table[source.label_column].str.strip()})
    out["lesion_id"] = table[group].str.strip().where(table[group].str.strip() != "", out["image_id"]) if group else out["image_id"]
    renamed = table.rename(columns=METADATA_ALIASES)
    for column in METADATA:
        if column in renamed.columns and column not in (source.image_column, source.label_column):
            out[column] = renamed[column]
    check_unique_ids(out, csv)
    return attach_paths(out, Path(source.images) if source.images else csv.parent, csv)
