"""Lesion-level, class-stratified train/val/test split: no lesion's images ever straddle two splits."""

from pathlib import Path

import numpy as np
import pandas as pd

from dermcli.core.errors import DermcliError
from dermcli.core.files import write_text
from dermcli.data.tables import PATIENT, read_csv

SPLITS = ("train", "val", "test")
SPLIT_COLUMNS = ["image_id", "lesion_id", "label", "split"]


def split_groups(table: pd.DataFrame) -> pd.Series:
    """What the split keeps together: the strongest id the data has, patient > lesion > image."""
    return table[PATIENT] if PATIENT in table.columns else table["lesion_id"]


def assign_lesions(table: pd.DataFrame, fractions, seed: int) -> dict[str, int]:
    """Lesion id -> index into `fractions`, so each class's images divide close to `fractions`.

    Per class, lesions are shuffled (seeded) and each goes to the part furthest below its image target,
    which keeps image-level class ratios within about a point even for multi-image lesions.
    """
    rng = np.random.default_rng(seed)
    lesions = group_labels(table)
    assignment: dict[str, int] = {}
    for label in sorted(lesions["label"].unique()):
        group = lesions[lesions["label"] == label]
        order = rng.permutation(len(group))
        targets = np.asarray(fractions) * group["n"].sum()
        filled = np.zeros(len(fractions))
        for lesion_id, n in zip(group.index[order], group["n"].to_numpy()[order]):
            k = int(np.argmax(targets - filled))
            filled[k] += n
            assignment[lesion_id] = k
    return assignment


def group_labels(table: pd.DataFrame) -> pd.DataFrame:
    """Per group (patient or lesion), sorted by id: its class for stratifying (its most common label, the first
    by name on ties; a lesion has one) and its number of images."""
    counts = table.assign(group=split_groups(table)).groupby(["group", "dx"]).size().rename("c").reset_index()
    first = counts.sort_values(["group", "c", "dx"], ascending=[True, False, True]).drop_duplicates("group").set_index("group")
    return pd.DataFrame({"label": first["dx"], "n": counts.groupby("group")["c"].sum()}).sort_index()


def check_splittable(table: pd.DataFrame) -> None:
    """A class of one group (patient or lesion) cannot be split: it would be learnt or tested, never both."""
    per_class = table.assign(group=split_groups(table)).groupby("dx")["group"].nunique()
    few = per_class[per_class < 2]
    if len(few):
        kind = "patient" if PATIENT in table.columns else "lesion"
        raise DermcliError(f"class {few.index[0]} has only {few.iloc[0]} {kind}, too few to split (it would be in train or test, never "
                           f"both): --merge it into another class, or leave it out with --classes ... --drop-other")


def make_split(table: pd.DataFrame, fractions=(0.70, 0.15, 0.15), seed: int = 42) -> pd.DataFrame:
    """Assign whole lesions (whole patients, where the data names them) to train/val/test, class-stratified
    (`assign_lesions`). Returns a table with columns image_id, lesion_id, label, split (and patient_id)."""
    check_splittable(table)
    assignment = {group: SPLITS[k] for group, k in assign_lesions(table, fractions, seed).items()}
    split = pd.DataFrame(
        {"image_id": table["image_id"], "lesion_id": table["lesion_id"], "label": table["dx"], "split": split_groups(table).map(assignment)}
    )
    if PATIENT in table.columns:
        split[PATIENT] = table[PATIENT]
    check_no_leakage(split)
    return split


def fold_splits(table: pd.DataFrame, folds: int, seed: int = 42) -> list[pd.DataFrame]:
    """K splits for cross-validation: the test split stays exactly make_split's; the other lesions are cut into
    `folds` lesion-level, class-stratified folds, and split k validates on fold k and trains on the rest."""
    plain = make_split(table, seed=seed)
    rest = plain["split"] != "test"
    fold_of = assign_lesions(table[rest.to_numpy()], (1 / folds,) * folds, seed + 1)
    fold = split_groups(plain).map(fold_of)
    splits = []
    for k in range(folds):
        split = plain.copy()
        split.loc[rest, "split"] = np.where(fold[rest] == k, "val", "train")
        check_no_leakage(split)
        splits.append(split)
    return splits


def check_no_leakage(split: pd.DataFrame, source: str = "split") -> None:
    for column, kind in (("lesion_id", "lesion"), (PATIENT, "patient")):
        if column not in split.columns:
            continue
        per_group = split.groupby(column)["split"].nunique()
        leaked = per_group.index[per_group > 1]
        if len(leaked):
            raise DermcliError(f"{source}: {kind} {leaked[0]} appears in more than one split ({len(leaked)} {kind}s leak): refused")


def save_split(split: pd.DataFrame, path: Path) -> None:
    """The split's columns, and the pixel digests of its images where known (data.overlap)."""
    extra = [c for c in split.columns if c == PATIENT or c.startswith("pixels_")]
    write_text(path, split[SPLIT_COLUMNS + extra].to_csv(index=False))


def load_split(path: Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise DermcliError(f"{path}: split file not found")
    split = read_csv(path)
    absent = [c for c in SPLIT_COLUMNS if c not in split.columns]
    if absent:
        raise DermcliError(f"{path}: missing column(s) {', '.join(absent)}")
    bad = split.index[~split["split"].isin(SPLITS)]
    if len(bad):
        raise DermcliError(f"{path}: row {bad[0] + 2}: split must be train, val or test, not {split.at[bad[0], 'split']!r}")
    check_no_leakage(split, str(path))
    return split


def check_against_data(table: pd.DataFrame, split: pd.DataFrame, source: str = "split") -> None:
    """Refuse a split in which one of the data set's own lesions (or patients) has images in two splits: a split
    file that calls each image its own lesion would otherwise pass its own leakage check. A split grouping more
    coarsely than the data (patients over lesions) passes; data without group ids has nothing to check against."""
    if not has_group_ids(table):
        return
    for column, kind in (("lesion_id", "lesion"), (PATIENT, "patient")):
        if column not in table.columns:
            continue
        merged = split[["image_id", "split"]].merge(table[["image_id", column]], on="image_id")
        per_group = merged.groupby(column)["split"].nunique()
        leaked = per_group.index[per_group > 1]
        if len(leaked):
            images = merged[merged[column] == leaked[0]].drop_duplicates("split")
            where = ", ".join(f"{i} in {s}" for i, s in zip(images["image_id"], images["split"]))
            raise DermcliError(f"{source}: the data set's {kind} {leaked[0]} has images in more than one split ({where}; "
                               f"{len(leaked)} {kind}s straddle): its {kind} ids are not the data's; refused")


def has_group_ids(table: pd.DataFrame) -> bool:
    """Whether the data names lesions (or patients); class folders and ISIC CSVs without metadata make each image its own."""
    return bool((table["lesion_id"] != table["image_id"]).any()) or PATIENT in table.columns


GROUPLESS_WARNING = ("warning: {data} names no lesion or patient ids, so each image is its own group: "
                     "near-duplicate images of one lesion may straddle the splits")


def select(table: pd.DataFrame, split: pd.DataFrame, name: str, source: str = "split") -> pd.DataFrame:
    """Rows of `table` that `split` puts in `name`; every image of that split must be in the table, in the same
    lesion as the data set says (check_against_data)."""
    check_against_data(table, split, source)
    ids = split.loc[split["split"] == name, "image_id"]
    missing = ids[~ids.isin(table["image_id"])]
    if len(missing):
        raise DermcliError(f"{source}: {len(missing)} {name} image(s) are not in the data set, e.g. {missing.iloc[0]!r}")
    return table[table["image_id"].isin(set(ids))].reset_index(drop=True)
