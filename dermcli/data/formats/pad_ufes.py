"""PAD-UFES-20: metadata.csv (patient_id, lesion_id, img_id, diagnostic in ACK, BCC, MEL, NEV, SCC, SEK, and
clinical columns) with smartphone PNGs below the folder (images/, or the release's imgs_part_*)."""

from pathlib import Path

import pandas as pd

from dermcli.data.tables import attach_paths, check_unique_ids, has_columns, layout_csv, read_csv, required_columns

NAME = "pad-ufes-20"
CSV_NAME = "metadata.csv"
REQUIRED = ("patient_id", "lesion_id", "img_id", "diagnostic")
CLINICAL = {"age": "age", "gender": "sex", "region": "localization"}  # to the names subgroups use


def detect(path: Path) -> bool:
    return has_columns(layout_csv(path, CSV_NAME), REQUIRED)


def load(source) -> pd.DataFrame:
    csv = layout_csv(source.path, CSV_NAME)
    table = required_columns(read_csv(csv), REQUIRED, csv)
    out = pd.DataFrame({"image_id": table["img_id"].str.strip().map(lambda name: Path(name).stem),
                        "dx": table["diagnostic"].str.strip(), "patient_id": table["patient_id"].str.strip()})
    out["lesion_id"] = out["patient_id"] + "/" + table["lesion_id"].str.strip()  # a lesion number within its patient
    for column, name in CLINICAL.items():
        if column in table.columns:
            out[name] = table[column].str.strip().str.lower() if name == "sex" else table[column]
    check_unique_ids(out, csv)
    return attach_paths(out, Path(source.images) if source.images else csv.parent, csv)
