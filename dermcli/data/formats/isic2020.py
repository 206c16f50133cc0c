"""SIIM-ISIC 2020: train.csv (image_name, patient_id, sex, age_approx, anatom_site_general_challenge, diagnosis,
benign_malignant, target) with the JPEGs in jpeg/train/. The label is the binary `target` (benign/malignant), or
`--label-column diagnosis`; images are grouped by patient."""

from pathlib import Path

import pandas as pd

from dermcli.core.errors import DermcliError
from dermcli.data.tables import METADATA_ALIASES, attach_paths, check_unique_ids, has_columns, layout_csv, read_csv, required_columns

NAME = "isic2020"
CSV_NAME = "train.csv"
REQUIRED = ("image_name", "patient_id", "target")


def detect(path: Path) -> bool:
    return has_columns(layout_csv(path, CSV_NAME), REQUIRED)


def load(source) -> pd.DataFrame:
    csv = layout_csv(source.path, CSV_NAME)
    label = source.label_column or "target"
    table = required_columns(read_csv(csv), REQUIRED + (label,), csv)
    if label == "target":
        bad = table.index[~table["target"].isin(("0", "1"))]
        if len(bad):
            raise DermcliError(f"{csv}: row {bad[0] + 2}: target must be 0 or 1, not {table.at[bad[0], 'target']!r}")
        dx = table["target"].map({"0": "benign", "1": "malignant"})
    else:
        dx = table[label].str.strip()
    out = pd.DataFrame({"image_id": table["image_name"].str.strip(), "dx": dx, "patient_id": table["patient_id"].str.strip()})
    out["lesion_id"] = out["image_id"]  # 2020 names patients, not lesions
    for column, name in METADATA_ALIASES.items():
        if column in table.columns:
            out[name] = table[column]
    if "sex" in table.columns:
        out["sex"] = table["sex"]
    check_unique_ids(out, csv)
    root = Path(source.images) if source.images else (csv.parent / "jpeg" / "train" if (csv.parent / "jpeg" / "train").is_dir() else csv.parent)
    return attach_paths(out, root, csv)
