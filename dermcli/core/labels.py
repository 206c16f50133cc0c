"""Label sets: a data set's class names in one order, which of them are malignant, and the table of known names
that gives the benign/malignant grouping and matches one data set's labels to another's. No imports: `--help`
and a cold `predict` read these.

A checkpoint records its classes ("class_names") and its malignant ones ("malignant"); checkpoints from before
label sets were open are HAM10000's seven classes with the card's grouping (mel, bcc, akiec).
"""

CLASSES: tuple[str, ...] = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")  # HAM10000's, the shipped models'
MALIGNANT: tuple[str, ...] = ("akiec", "bcc", "mel")  # the card's grouping
BINARY_CLASSES: tuple[str, ...] = ("benign", "malignant")

TASKS = ("multiclass", "binary")

# Known label names (lower case) -> (the HAM10000-style name they match, malignant?). ISIC 2019 writes AK and
# SCC, PAD-UFES-20 ACK, NEV and SEK, SIIM-ISIC 2020 whole words; docs/data.md prints this table.
KNOWN_LABELS: dict[str, tuple[str, bool]] = {
    **dict.fromkeys(("mel", "melanoma"), ("mel", True)),
    **dict.fromkeys(("bcc", "basal cell carcinoma"), ("bcc", True)),
    **dict.fromkeys(("akiec", "ak", "ack", "actinic keratosis", "actinic keratoses"), ("akiec", True)),
    **dict.fromkeys(("scc", "squamous cell carcinoma"), ("scc", True)),
    **dict.fromkeys(("nv", "nev", "nevus", "naevus"), ("nv", False)),
    **dict.fromkeys(("bkl", "sek", "seborrheic keratosis", "lentigo nos", "solar lentigo", "lichenoid keratosis"), ("bkl", False)),
    **dict.fromkeys(("df", "dermatofibroma"), ("df", False)),
    **dict.fromkeys(("vasc", "vascular lesion"), ("vasc", False)),
    "cafe-au-lait macule": ("cafe-au-lait macule", False),
    "atypical melanocytic proliferation": ("atypical melanocytic proliferation", False),
    "benign": ("benign", False),
    "malignant": ("malignant", True),
}


def canonical(name: str) -> str:
    """The name a label matches others by: its known HAM10000-style name, else itself in lower case."""
    key = str(name).strip().lower()
    return KNOWN_LABELS.get(key, (key, False))[0]


def sorted_labels(labels) -> tuple[str, ...]:
    """The one class order: by name, case-insensitively (HAM10000's is akiec, bcc, bkl, df, mel, nv, vasc)."""
    return tuple(sorted(set(labels), key=lambda s: (s.lower(), s)))


def known_grouping(classes) -> tuple[tuple[str, ...] | None, list[str]]:
    """The malignant classes by the known-names table, and the classes it does not know; None when any is unknown."""
    unknown = [c for c in classes if str(c).strip().lower() not in KNOWN_LABELS]
    if unknown:
        return None, unknown
    return tuple(c for c in classes if KNOWN_LABELS[str(c).strip().lower()][1]), []


def class_names(task: str, classes=CLASSES) -> tuple[str, ...]:
    return tuple(classes) if task == "multiclass" else BINARY_CLASSES


def malignant_classes(meta: dict) -> tuple[str, ...] | None:
    """A model's (or eval's) malignant classes among its class names; None when it has no benign/malignant view."""
    if meta["task"] == "binary":
        return ("malignant",)
    if "malignant" in meta:
        return None if meta["malignant"] is None else tuple(meta["malignant"])
    return MALIGNANT if tuple(meta["class_names"]) == CLASSES else None  # written before label sets were open


def has_binary_view(meta: dict) -> bool:
    return malignant_classes(meta) is not None


def task_targets(labels, task: str, classes=CLASSES, malignant=MALIGNANT):
    """Labels (names among `classes`) -> integer targets of the task: the class index, or 1 for a malignant class."""
    if task == "multiclass":
        index = {c: i for i, c in enumerate(classes)}
        return [index[d] for d in labels]
    return [int(d in malignant) for d in labels]


def model_targets(labels, meta: dict):
    """Targets of a model's task for labels named as its training data named them (its classes)."""
    names = list(meta["class_names"]) if meta["task"] == "multiclass" else list(meta.get("data_classes", CLASSES))
    # checkpoints before label sets were open named ISIC's classes in lower case (mel), the data now MEL
    spelled = {**{canonical(n): n for n in names}, **{n.lower(): n for n in names}, **{n: n for n in names}}
    labels = [spelled.get(d, spelled.get(str(d).lower(), spelled.get(canonical(d), d))) for d in labels]
    if meta["task"] == "multiclass":
        return task_targets(labels, "multiclass", names)
    return task_targets(labels, "binary", malignant=meta.get("data_malignant", MALIGNANT))


def malignant_score(probs, meta: dict):
    """The malignant view of task probabilities (N, K) -> (N,): p(malignant) of a binary model, the sum of its
    malignant classes' probabilities for a multi-class one (p(mel) + p(bcc) + p(akiec) for the card's 7)."""
    names, malignant = list(meta["class_names"]), malignant_classes(meta)
    if malignant is None:
        return None
    return probs[:, [names.index(c) for c in malignant]].sum(axis=1)


def malignant_targets(y, meta: dict):
    """The malignant view of task targets (N,) -> (N,) in {0, 1}."""
    names, malignant = list(meta["class_names"]), malignant_classes(meta) or ()
    return (y[:, None] == [names.index(c) for c in malignant]).any(axis=1).astype(int) if malignant else y * 0


def score_label(meta: dict) -> str:
    """How the malignant score is made, for reports and the console: p(mel)+p(bcc)+p(akiec) for the card's."""
    malignant = malignant_classes(meta)
    if meta["task"] == "binary" or malignant is None:
        return "p(malignant)" if meta["task"] == "binary" else ""
    ordered = ("mel", "bcc", "akiec") if set(malignant) == set(MALIGNANT) else malignant  # as the card writes it
    return "+".join(f"p({c})" for c in ordered)
