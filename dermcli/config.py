"""Training configuration: one dataclass, saved as config.json and inside every checkpoint."""

from dataclasses import asdict, dataclass, fields

from dermcli.errors import DermcliError
from dermcli.labels import TASKS
from dermcli.options import RANGES, check

SCHEDULERS = ("plateau", "cosine")
CLASS_WEIGHTS = ("none", "sqrt", "balanced")


@dataclass
class TrainConfig:
    data: str
    out: str
    model: str = "cnn"
    task: str = ""  # "" = the backend's default
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    scheduler: str = "plateau"
    patience: int = 7
    label_smoothing: float = 0.0
    ema: float = 0.0  # decay of the weights' moving average that is validated and kept; 0 = off
    class_weights: str = "balanced"
    augment: str = "dihedral"  # dihedral (flips + 90-degree turns), flips, or none
    seed: int = 42
    split_seed: int = 42
    split_file: str = ""
    freeze: str = "none"
    fp16_frozen: bool = False  # round the frozen weights to fp16 first: an fp16 copy of the checkpoint then differs only in what trained
    pretrained: bool = True
    init: str = ""
    preprocessing: str = ""  # "" = the backend's default
    strides: str = "v1.5"
    head: str = ""  # "" = the backend's default (card for resnet50, linear for named backbones)
    input_size: int = 0  # 0 = the backend's default (its weights' own)
    target_sensitivity: float = 0.90
    warmup_epochs: int = 0  # staged fine-tuning: train the head alone this many epochs first
    finetune_lr: float = 0.0  # learning rate after the warm-up; 0 = lr / 10
    amp: str = ""  # autocast precision: bf16, fp16 or none; "" = bf16 on GPUs that support it, else none (devices.resolve_amp)
    deterministic: bool = False
    sync_bn: bool = False  # under torchrun on GPUs: BatchNorm statistics over the global batch (SyncBatchNorm)
    teacher: str = ""  # knowledge distillation from this checkpoint (dermcli.distill)
    distill_weight: float = 0.5
    distill_temperature: float = 2.0

    def resolved(self) -> "TrainConfig":
        """Fill backend defaults and check every choice, raising DermcliError on the first bad one."""
        from dermcli.models import PREPROCESSING, get_backend
        from dermcli.devices import AMP
        from dermcli.models.common import HEADS
        from dermcli.models.resnet50 import STRIDES

        backend = get_backend(self.model)
        if not backend.trainable:
            raise DermcliError(f"--model {self.model} is not trained: make one with `dermcli {self.model} A.pt B.pt …`")
        cfg = TrainConfig(**asdict(self))
        cfg.task = cfg.task or backend.default_task
        cfg.preprocessing = cfg.preprocessing or backend.default_preprocessing
        if cfg.init:
            cfg.pretrained = False
        from dermcli.preprocess import AUGMENTATIONS

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
        elif (cfg.distill_weight, cfg.distill_temperature) != (0.5, 2.0):
            raise DermcliError("--distill-weight and --distill-temperature need --teacher")
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
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})
