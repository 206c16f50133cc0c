"""Data sets as one table: image_id, lesion_id, dx (the data set's own label names), path, one row per image, plus
patient_id where the data names patients and the metadata columns subgroups use.

The layout is detected from what the path holds (or named with --format), in this order:
- ham10000: a folder with HAM10000_metadata.csv (or the CSV itself), JPEGs anywhere below;
- isic2020: SIIM-ISIC 2020's train.csv (image_name, patient_id, ..., target), JPEGs in jpeg/train/;
- pad-ufes-20: PAD-UFES-20's metadata.csv (patient_id, lesion_id, img_id, diagnostic), PNGs below;
- isic: an ISIC 2018 / 2019 one-hot ground-truth CSV (image,MEL,NV,...) or a folder holding one;
- folders: a folder whose sub-folders are the classes, whatever their names;
- csv: any CSV, with --image-column and --label-column (and --group-column).
"""

from dataclasses import dataclass, fields
from pathlib import Path

import pandas as pd

from dermcli.core.errors import DermcliError
from dermcli.data.formats import csv_table, folders, ham10000, isic, isic2020, pad_ufes
from dermcli.data.tables import COLUMNS, METADATA, PATIENT

LAYOUTS = (ham10000, isic2020, pad_ufes, isic, folders, csv_table)  # detection order: the most specific first
FORMATS = tuple(layout.NAME for layout in LAYOUTS)


@dataclass(frozen=True)
class Source:
    """Where a data set is and how to read it: the options every command that reads data takes."""

    path: str
    format: str = ""  # empty: detected
    images: str = ""  # the images' folder, when not below the CSV's
    image_column: str = ""
    label_column: str = ""
    group_column: str = ""

    @classmethod
    def of(cls, data, **options) -> "Source":
        """A Source from a path (or a Source), with the options given (empty ones left out)."""
        base = data if isinstance(data, Source) else cls(str(data))
        return cls(**{**base.__dict__, **{k: str(v) for k, v in options.items() if v}})

    @classmethod
    def of_config(cls, config: dict) -> "Source":
        """The data a run trained on, from its recorded config (runs before these options read HAM10000 or ISIC)."""
        return cls(config["data"], **{f.name: config.get(f.name) or "" for f in fields(cls) if f.name != "path"})


def detect_format(path: Path) -> str:
    path = Path(path)
    if not path.exists():
        raise DermcliError(f"{path}: no such file or folder")
    if path.is_file() and path.suffix.lower() != ".csv":
        raise DermcliError(f"{path}: expected a folder or a CSV file")
    for layout in LAYOUTS:
        if layout.detect(path):
            return layout.NAME
    if path.is_file():
        raise DermcliError(f"{path}: not a layout dermcli knows (HAM10000, ISIC 2018/2019/2020, PAD-UFES-20): "
                           "for another CSV give --image-column and --label-column")
    raise DermcliError(f"{path}: no HAM10000_metadata.csv, ISIC or PAD-UFES-20 CSV, or class sub-folders with images found")


def load_dataset(data, images: Path | None = None) -> pd.DataFrame:
    """Load any supported layout (`data`: a path or a Source); every listed image exists on disk."""
    source = Source.of(data, images=images)
    if source.format and source.format not in FORMATS:
        raise DermcliError(f"--format {source.format!r} is not one of {', '.join(FORMATS)}")
    name = source.format or ("csv" if source.image_column or source.label_column else detect_format(Path(source.path)))
    if not Path(source.path).exists():
        raise DermcliError(f"{source.path}: no such file or folder")
    table = next(layout for layout in LAYOUTS if layout.NAME == name).load(source)
    if table.empty:
        raise DermcliError(f"{source.path}: the data set lists no images")
    extra = [c for c in [PATIENT] + METADATA if c in table.columns]
    return table[COLUMNS + extra].reset_index(drop=True)
