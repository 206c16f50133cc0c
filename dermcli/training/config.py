"""Training configuration: one dataclass, saved as config.json and inside every checkpoint."""

import difflib
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from dermcli.core.errors import DermcliError
from dermcli.core.labels import TASKS
from dermcli.core.options import RANGES, check

SCHEDULERS = ("plateau", "cosine")
CLASS_WEIGHTS = ("none", "sqrt", "balanced")


def option(default, help: str):
    """A TrainConfig field and its one declaration: default, help text; its range (core.options.RANGES, under the
    option's name) and type come from the table and the annotation. The CLI's `train` options, `--help` and
    `--config` files are all made from these fields."""
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    data: str = option("", "The data set: a HAM10000, ISIC 2018/2019/2020 or PAD-UFES-20 folder (or its CSV), a class-folder tree, "
                           "or any CSV with --image-column and --label-column; see docs/data.md.")
    format: str = option("", "The data's layout when not detected: ham10000, isic, isic2020, pad-ufes-20, folders or csv.")
    images: str = option("", "The images' folder, when they are not below the data's CSV.")
    image_column: str = option("", "Generic CSV: the column naming each image (a file name or id below the CSV's folder or --images).")
    label_column: str = option("", "Generic CSV (or ISIC 2020, e.g. diagnosis): the column holding each image's label.")
    group_column: str = option("", "Generic CSV: the lesion or patient id column; images sharing one never straddle splits.")
    classes: str = option("", "Keep only these labels (NAME,NAME,...); another label is an error unless --drop-other.")
    merge: str = option("", "Merge labels into one class: NEW=LABEL,LABEL (several separated by ';'), e.g. 'keratosis=bkl,SEK'.")
    drop_other: bool = option(False, "With --classes: leave out images of other labels (the log says how many) instead of refusing.")
    malignant: str = option("", "The malignant classes (NAME,...) of the benign/malignant view; default: from the table of known "
                                "labels (mel, bcc, scc, akiec/AK/ACK malignant), none when a label is in neither table.")
    out: str = option("", "Run folder for best.pt, last.pt, split.csv, history.csv, config.json.")
    model: str = option("cnn", "cnn (28x28, 7-class), resnet50 (the binary card's), any torchvision classification model by name, "
                               "or timm/NAME; see `dermcli models`.")
    task: str = option("", "multiclass or binary; empty = the backend's default.")
    epochs: int = option(30, "Maximum number of epochs (with --resume, a new total).")
    batch_size: int = option(64, "Images per training step (per process under torchrun).")
    lr: float = option(1e-3, "AdamW learning rate.")
    weight_decay: float = option(1e-4, "AdamW weight decay.")
    scheduler: str = option("plateau", "plateau (ReduceLROnPlateau on the val metric) or cosine.")
    lr_warmup: int = option(0, "With --scheduler cosine: epochs of linear learning-rate warm-up before the cosine decay.")
    patience: int = option(7, "Early stopping: epochs without val improvement.")
    label_smoothing: float = option(0.0, "Label smoothing of the loss.")
    ema: float = option(0.0, "Validate and keep a moving average of the weights with this decay (e.g. 0.999); 0 = off.")
    class_weights: str = option("balanced", "Imbalance handling in the loss: none, sqrt or balanced.")
    augment: str = option("dihedral", "Train-time augmentation: dihedral (flips + 90-degree turns), flips, or none; plus colour jitter.")
    crop_scale: float = option(1.0, "Random resized crops in training: each image is a crop of at least this share of its area "
                                     "(aspect 3:4 to 4:3), scaled back to the input size; 1 = whole images.")
    seed: int = option(42, "Seed for initialisation, shuffling and augmentation.")
    split_seed: int = option(42, "Seed of the lesion-level 70/15/15 split.")
    split_file: str = option("", "Reuse this split.csv instead of making one.")
    freeze: str = option("none", "none; backbone (the head alone trains, on cached features); or a module path of the backbone "
                                 "(e.g. layer3 for resnet50: the layers after it and the head train).")
    fp16_frozen: bool = option(False, "Round the frozen layers to fp16 before training, so an fp16 copy loses nothing there.")
    pretrained: bool = option(True, "Start from the model's ImageNet weights (torchvision's weights API, or timm); "
                                    "offline, use --no-pretrained or --init FILE.")
    init: str = option("", "Start from a (partial) state dict in the model's own key names (torchvision's or timm's).")
    preprocessing: str = option("", "unit, imagenet, caffe or inception; empty = the backend's default.")
    strides: str = option("v1.5", "resnet50: v1.5 (torchvision) or v1 (Caffe/Keras) stride placement.")
    head: str = option("", "linear or card (the binary card's BN-dropout-512-256 head); empty = the model's default.")
    input_size: int = option(0, "Square input size in pixels; 0 = the model's own (its weights').")
    target_sensitivity: float = option(0.90, "Sensitivity the val-tuned decision threshold reaches.")
    warmup_epochs: int = option(0, "Staged fine-tuning: train the head alone (backbone frozen, features cached) for this many "
                                   "epochs, then unfreeze down to --freeze.")
    finetune_lr: float = option(0.0, "Learning rate after the warm-up; 0 = --lr / 10.")
    amp: str = option("", "Mixed precision: bf16, fp16 (CUDA only) or none; empty = bf16 on GPUs that support it, else none.")
    deterministic: bool = option(False, "Force deterministic algorithms (repeatable CPU runs).")
    sync_bn: bool = option(False, "Under torchrun on GPUs: BatchNorm statistics over the global batch (SyncBatchNorm).")
    teacher: str = option("", "Knowledge distillation: also learn this trained 7-class checkpoint's softened probabilities on "
                              "the same view of each image.")
    distill_weight: float | None = option(None, "Share of the teacher's term in the loss (with --teacher; 0.5 if not given).")
    distill_temperature: float | None = option(None, "Softening temperature of teacher and student (with --teacher; 2 if not given).")
    tensorboard: bool = option(True, "Write TensorBoard event files to OUT/tb (where tensorboard is installed: the track extra).")
    mlflow: str = option("", "Also log to MLflow: local (a file store in ./mlruns) or a tracking URI (e.g. http://localhost:5000).")

    def resolved(self) -> "TrainConfig":
        """Fill backend defaults and check every choice, raising DermcliError on the first bad one."""
        # Here, not above: the CLI builds `train --help` from this module, which must stay quick (no torch, numpy).
        from dermcli.data.transforms import AUGMENTATIONS
        from dermcli.models.backend import PREPROCESSING
        from dermcli.models.common import HEADS
        from dermcli.models.registry import get_backend
        from dermcli.models.resnet50 import STRIDES
        from dermcli.runtime.devices import AMP

        backend = get_backend(self.model)
        if not backend.trainable:
            raise DermcliError(f"--model {self.model} is not trained: make one with `dermcli {self.model} A.pt B.pt …`")
        cfg = TrainConfig(**asdict(self))
        cfg.task = cfg.task or backend.default_task
        cfg.preprocessing = cfg.preprocessing or backend.default_preprocessing
        if cfg.init:
            cfg.pretrained = False

        if isinstance(cfg.augment, bool):  # configs written before augment had choices
            cfg.augment = "dihedral" if cfg.augment else "none"
        checks = [("augment", cfg.augment, AUGMENTATIONS),
            ("task", cfg.task, TASKS), ("scheduler", cfg.scheduler, SCHEDULERS), ("class-weights", cfg.class_weights, CLASS_WEIGHTS),
            # a backbone's module paths are checked where the model is split (models.common.split_at)
            ("freeze", cfg.freeze, backend.freeze_choices if not backend.freeze_points else (cfg.freeze,)),
            ("preprocessing", cfg.preprocessing, PREPROCESSING), ("strides", cfg.strides, STRIDES),
            ("head", cfg.head, ("",) + HEADS if not cfg.head else HEADS), ("amp", cfg.amp, ("",) + AMP),
        ]
        for name, value, allowed in checks:
            if value not in allowed:
                raise DermcliError(f"--{name} {value!r} is not one of {', '.join(allowed)} (for --model {cfg.model})")
        # Options a backend does not use would be ignored: refuse them rather than let them look effective.
        given = {"init": bool(cfg.init), "strides": cfg.strides != "v1.5", "head": bool(cfg.head),
                 "input_size": cfg.input_size not in (0, backend.input_size)}
        unused = [name for name, is_given in given.items() if is_given and name not in backend.default_options]
        if unused:
            raise DermcliError(f"--{unused[0].replace('_', '-')} does not apply to --model {cfg.model}")
        cfg.head = cfg.head or backend.default_options.get("head", "")
        cfg.finetune_lr = cfg.finetune_lr or cfg.lr / 10
        if cfg.warmup_epochs:
            problem = ("--warmup-epochs needs a model with a backbone to freeze" if "backbone" not in backend.freeze_choices else
                       "--warmup-epochs trains the head first, then unfreezes down to --freeze: use --freeze none or a point below the head"
                       if cfg.freeze == "backbone" else f"--warmup-epochs {cfg.warmup_epochs} leaves no epoch to fine-tune in --epochs {cfg.epochs}"
                       if cfg.warmup_epochs >= cfg.epochs else "--ema with --warmup-epochs is not supported" if cfg.ema else None)
            if problem:
                raise DermcliError(problem)
        cfg.input_size = cfg.input_size or backend.input_size
        if cfg.teacher:
            problem = ("--teacher teaches a 7-class student: use --task multiclass" if cfg.task != "multiclass" else
                       "--teacher needs the student's images (--freeze none), not cached features" if cfg.freeze != "none" else
                       "--teacher with --warmup-epochs is not supported" if cfg.warmup_epochs else None)
            if problem:
                raise DermcliError(problem)
            cfg.distill_weight = 0.5 if cfg.distill_weight is None else cfg.distill_weight
            cfg.distill_temperature = 2.0 if cfg.distill_temperature is None else cfg.distill_temperature
        elif (cfg.distill_weight, cfg.distill_temperature) != (None, None):
            raise DermcliError("--distill-weight and --distill-temperature need --teacher")
        if cfg.crop_scale < 1 and (cfg.freeze != "none" or cfg.warmup_epochs or cfg.teacher):
            raise DermcliError("--crop-scale crops images as they train: it needs --freeze none (cached features are of whole "
                               "images) and no --warmup-epochs or --teacher (its targets are of whole views)")
        if cfg.lr_warmup and (cfg.scheduler != "cosine" or cfg.warmup_epochs or cfg.lr_warmup >= cfg.epochs):
            raise DermcliError(f"--lr-warmup {cfg.lr_warmup} needs --scheduler cosine, no --warmup-epochs, and fewer epochs than --epochs {cfg.epochs}")
        check_mlflow(cfg.mlflow)
        if cfg.fp16_frozen and cfg.freeze == "none":
            raise DermcliError("--fp16-frozen rounds the frozen layers, but --freeze none freezes nothing")
        for f in fields(cfg):
            if (option := f.name.replace("_", "-")) in RANGES and not (option == "input-size" and cfg.input_size == 0):
                check(option, getattr(cfg, f.name))
        return cfg

    def model_options(self) -> dict:
        return {"strides": self.strides, "freeze": self.freeze, "pretrained": self.pretrained, "init": self.init or None,
                "head": self.head, "input_size": self.input_size}

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        """A stored config (config.json, a checkpoint's); runs before the distillation options had no default
        recorded their 0.5 and 2.0 without a teacher."""
        names = {f.name for f in fields(cls)}
        data = {k: v for k, v in data.items() if k in names}
        if not data.get("teacher"):
            data = {**data, "distill_weight": None, "distill_temperature": None}
        return cls(**data)


def check_mlflow(asked: str) -> None:
    """--mlflow: `local` or a URI, with MLflow installed; checked before the run folder is written."""
    from importlib.util import find_spec

    from dermcli.runtime.tracking import LOCAL_STORE  # here, not above, as in resolved()

    if asked and asked != LOCAL_STORE and ":" not in asked:
        raise DermcliError(f"--mlflow {asked!r}: give local (a file store in ./mlruns) or a tracking URI such as http://localhost:5000")
    if asked and find_spec("mlflow") is None:
        raise DermcliError("--mlflow needs MLflow: pip install mlflow-skinny (dermcli's track extra)")


def read_config_file(path: Path) -> dict:
    """`train --config FILE`: TOML (read with tomllib), or JSON such as a run's config.json, holding any of
    TrainConfig's keys. Each key is checked as a flag would be: an unknown one, a wrong type or a value out of
    range is a one-line error naming the file, the key and what it allows."""
    try:  # here, not above, as in resolved()
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text) if path.suffix.lower() == ".json" else None
    except OSError as e:
        raise DermcliError(f"--config {path}: cannot read ({e.strerror or e})") from None
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as e:
        raise DermcliError(f"--config {path}: not valid {path.suffix[1:].upper()} ({e})") from None
    if data is None:
        raise DermcliError(f"--config {path}: give a .toml file (or a run's config.json)")
    if path.suffix.lower() == ".json":
        data = as_asked(data)
    known = {f.name: f for f in fields(TrainConfig)}
    values = {}
    for key, value in data.items():
        name = key.replace("-", "_")
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.0)
            raise DermcliError(f"--config {path}: unknown key {key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        values[name] = _checked(path, key, value, known[name].type)
    return values


def as_asked(record: dict) -> dict:
    """A run's resolved config.json as the options that made it: the values resolved() filled in from the model's
    defaults are dropped, so that a flag given with the record (another --model, another --lr) resolves them
    afresh instead of inheriting the old model's; records of older versions are read as from_dict reads them."""
    from dermcli.models.registry import get_backend  # as in resolved()

    record = dict(record)
    backend = get_backend(record.get("model", "cnn"))
    filled = {"task": backend.default_task, "preprocessing": backend.default_preprocessing, "input_size": backend.input_size,
              "head": backend.default_options.get("head", ""), "finetune_lr": record.get("lr", 1e-3) / 10}
    dropped = [k for k, v in filled.items() if record.get(k) == v]
    if record.get("init") and record.get("pretrained") is False:
        dropped.append("pretrained")
    if not record.get("teacher"):
        dropped += ["distill_weight", "distill_temperature"]
    if isinstance(record.get("augment"), bool):  # configs written before augment had choices
        record["augment"] = "dihedral" if record["augment"] else "none"
    return {k: v for k, v in record.items() if k not in dropped}


def _checked(path: Path, key: str, value, annotation):
    """`value` if it has the field's type and lies in the option's range, else a one-line error."""
    allowed = tuple(a for a in getattr(annotation, "__args__", (annotation,)) if a is not type(None))
    kind = allowed[0]
    fits = (value is None and len(allowed) < len(getattr(annotation, "__args__", ()))) or (
        isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))) or (
        kind is float and isinstance(value, int) and not isinstance(value, bool))
    if not fits:
        raise DermcliError(f"--config {path}: {key} = {value!r}: must be {'a number' if kind in (int, float) else 'true or false' if kind is bool else 'a string'}"
                           + (" (a whole number)" if kind is int else ""))
    option = key.replace("_", "-")
    if option in RANGES and value is not None and not RANGES[option].contains(value):
        raise DermcliError(f"--config {path}: {key} = {value!r}: must be in {RANGES[option]}")
    return float(value) if kind is float and value is not None else value
