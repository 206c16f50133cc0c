"""Class names and the benign/malignant grouping, in the one order used everywhere, and the one malignant view
of any task. No imports: `--help` and a cold `predict` read these."""

CLASSES: tuple[str, ...] = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
MALIGNANT: tuple[str, ...] = ("akiec", "bcc", "mel")
BINARY_CLASSES: tuple[str, ...] = ("benign", "malignant")
MALIGNANT_INDICES: tuple[int, ...] = tuple(CLASSES.index(c) for c in MALIGNANT)

TASKS = ("multiclass", "binary")


def class_names(task: str) -> tuple[str, ...]:
    return CLASSES if task == "multiclass" else BINARY_CLASSES


def task_targets(dx_labels, task: str):
    """Map dx strings to integer targets of the task (index into class_names(task))."""
    if task == "multiclass":
        return [CLASSES.index(d) for d in dx_labels]
    return [int(d in MALIGNANT) for d in dx_labels]


def malignant_score(probs, task: str):
    """The malignant view of task probabilities (N, K) -> (N,): p(malignant) of a binary model, and
    p(mel) + p(bcc) + p(akiec) of a 7-class one (the card's grouping)."""
    return probs[:, 1] if task == "binary" else probs[:, list(MALIGNANT_INDICES)].sum(axis=1)


def malignant_targets(y, task: str):
    """The malignant view of task targets (N,) -> (N,) in {0, 1}."""
    return y if task == "binary" else (y[:, None] == list(MALIGNANT_INDICES)).any(axis=1).astype(int)
