"""A data set's label set: --merge, --classes and --drop-other applied to its labels, the class list that follows,
its benign/malignant grouping (--malignant, else the known-names table), and how another model's classes match
an evaluation set's labels (the alias table, --label-map)."""

from dataclasses import dataclass

import pandas as pd

from dermcli.core.errors import DermcliError
from dermcli.core.labels import CLASSES, MALIGNANT, canonical, known_grouping, malignant_classes, sorted_labels
from dermcli.data.dataset import Source, load_dataset


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


def _pairs(text: str, option: str) -> list[tuple[str, list[str]]]:
    """'new=a,b;other=c' -> [(new, [a, b]), (other, [c])]."""
    pairs = []
    for part in (p for p in text.split(";") if p.strip()):
        name, sep, sources = part.partition("=")
        if not sep or not name.strip() or not _names(sources):
            raise DermcliError(f"--{option} {text!r}: write NAME=LABEL,LABEL (several separated by ';')")
        pairs.append((name.strip(), _names(sources)))
    return pairs


def _find(label: str, present, option: str) -> str:
    """The data's own spelling of `label` (exact, else case-insensitive), or a one-line error listing the labels."""
    if label in present:
        return label
    folded = [p for p in present if p.lower() == label.lower()]
    if len(folded) == 1:
        return folded[0]
    raise DermcliError(f"--{option}: {label!r} is not a label of the data set (its labels: {', '.join(sorted_labels(present))})")


def choose_labels(table: pd.DataFrame, classes: str = "", merge: str = "", drop_other: bool = False, log=lambda m: None) -> pd.DataFrame:
    """The table with --merge applied, then only --classes kept: a label outside them is an error unless
    `drop_other`, which drops its images and says how many."""
    present = set(table["dx"])
    renames = {_find(source, present, "merge"): name for name, sources in _pairs(merge, "merge") for source in sources}
    table = table.assign(dx=table["dx"].map(lambda d: renames.get(d, d)))
    if not classes:
        return table
    present = set(table["dx"])
    keep = {_find(c, present, "classes") for c in _names(classes)}
    other = table.index[~table["dx"].isin(keep)]
    if len(other) and not drop_other:
        labels = sorted_labels(table.loc[other, "dx"])
        raise DermcliError(f"{len(other)} images have labels outside --classes ({', '.join(labels)}): "
                           "add them, --merge them in, or --drop-other to leave them out")
    if len(other):
        log(f"--drop-other: left out {len(other)} images labelled {', '.join(sorted_labels(table.loc[other, 'dx']))}")
    return table.drop(index=other).reset_index(drop=True)


def chosen_table(config: dict, log=lambda m: None, source: Source | None = None) -> pd.DataFrame:
    """The data set a run's config names (or `source`), with its labels chosen as the run chose them (--merge, --classes)."""
    return choose_labels(load_dataset(source or Source.of_config(config)), config.get("classes", ""), config.get("merge", ""),
                         config.get("drop_other", False), log)


@dataclass(frozen=True)
class LabelSet:
    classes: tuple[str, ...]  # the data set's classes, in the one order (core.labels.sorted_labels)
    malignant: tuple[str, ...] | None  # which of them are malignant; None: no benign/malignant view


def label_set(table: pd.DataFrame, malignant: str = "", log=lambda m: None) -> LabelSet:
    """The classes of a (chosen) table and their grouping: --malignant's names, else the known-names table; a class
    the table does not know leaves no binary view, and the log says so."""
    classes = sorted_labels(table["dx"])
    if len(classes) < 2:
        raise DermcliError(f"the data set has {len(classes)} class ({', '.join(classes)}): a classifier needs two or more")
    if malignant:
        return LabelSet(classes, tuple(sorted_labels(_find(m, classes, "malignant") for m in _names(malignant))))
    grouping, unknown = known_grouping(classes)
    if grouping is None:
        log(f"no benign/malignant view: {', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} in neither table of known "
            "labels (docs/data.md); give --malignant NAME,... to have one")
    return LabelSet(classes, grouping)


def is_binary_set(labels: LabelSet) -> bool:
    """Labels that are already the two of a binary task (ISIC 2020's target, benign/ and malignant/ folders)."""
    return {canonical(c) for c in labels.classes} == {"benign", "malignant"}


def model_truth(labels: pd.Series, meta: dict, label_map: str = "") -> tuple[pd.Series, pd.Series]:
    """An evaluation set's labels in a model's terms: each image's class among the classes the model learnt (None
    where it does not know the label), and its malignant truth (1/0; None where its grouping is unknown). Labels match
    by --label-map, else by name case-insensitively, else through the alias table (AK = ACK -> akiec, NEV -> nv)."""
    multiclass = meta["task"] == "multiclass"
    # a binary model learnt the grouping of its data's classes; checkpoints before label sets learnt HAM10000's
    names = list(meta["class_names"]) if multiclass else list(meta.get("data_classes", CLASSES))
    malignant = malignant_classes(meta) if multiclass else tuple(meta.get("data_malignant", MALIGNANT))
    mapped = dict(_label_map(label_map))
    wrong = [t for t in mapped.values() if t not in names]
    if wrong:
        raise DermcliError(f"--label-map: {wrong[0]!r} is not a class of the model ({', '.join(names)})")
    by_name, by_alias = {n.lower(): n for n in names}, {canonical(n): n for n in names}

    def match(label: str):
        return mapped.get(label) or by_name.get(label.lower()) or by_alias.get(canonical(label))

    def malignant_truth(label: str, cls):
        if not pd.isna(cls) and malignant is not None:
            return int(cls in malignant)
        grouping, _ = known_grouping([label])
        return None if grouping is None else int(bool(grouping))

    classes = labels.map(match)
    return classes, pd.Series([malignant_truth(d, c) for d, c in zip(labels, classes)], index=labels.index, dtype=object)


def _label_map(text: str) -> list[tuple[str, str]]:
    """--label-map 'AK=akiec,NEV=nv': each data label -> the model class it is."""
    out = []
    for part in (p for p in text.replace(";", ",").split(",") if p.strip()):
        source, sep, target = part.partition("=")
        if not sep or not source.strip() or not target.strip():
            raise DermcliError(f"--label-map {text!r}: write DATA_LABEL=MODEL_CLASS,... (e.g. AK=akiec,NEV=nv)")
        out.append((source.strip(), target.strip()))
    return out
