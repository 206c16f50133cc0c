"""Class names and the benign/malignant grouping, in the one order used everywhere."""

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
