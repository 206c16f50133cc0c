"""A training job: the resolved config (a resumed run's own), its device, precision and torchrun process, the run
folder, and the model from its starting weights or the resumed state."""

import functools
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import pandas as pd
import torch

from dermcli.core.errors import DermcliError
from dermcli.core.files import ensure_writable_dir
from dermcli.core.labels import class_names
from dermcli.data.formats.isic import NOT_A_CLASS
from dermcli.data.label_set import LabelSet, chosen_table, is_binary_set, label_set
from dermcli.data.split import load_split, make_split, save_split
from dermcli.models.checkpoint import num_outputs, read_checkpoint, round_to_half
from dermcli.models.registry import get_backend
from dermcli.runtime.devices import resolve_amp, resolve_device
from dermcli.runtime.distributed import World
from dermcli.runtime.distributed import start as join_job
from dermcli.training.config import TrainConfig
from dermcli.training.distill import check_teacher

RUN_FILES = ("best.pt", "last.pt", "history.csv", "split.csv", "config.json")


class Interrupted(DermcliError):
    exit_code = 130


def prepare_run(cfg: TrainConfig, resume: bool, overwrite: bool) -> Path:
    out = ensure_writable_dir(Path(cfg.out))
    existing = [f for f in RUN_FILES if (out / f).exists()]
    if existing and not resume and not overwrite:
        raise DermcliError(f"{out} already holds a run ({', '.join(existing)}): use --resume {out}, --overwrite, or another --out")
    return out


def run_split(cfg: TrainConfig, table: pd.DataFrame, out: Path, resume: bool, world: World) -> pd.DataFrame:
    """The run's split: made (or copied from --split-file) and saved by rank 0; read back by a resumed run and the other ranks."""
    if resume or not world.main:
        return load_split(out / "split.csv")
    split = load_split(Path(cfg.split_file)) if cfg.split_file else make_split(table, seed=cfg.split_seed)
    save_split(split, out / "split.csv")
    return split


@dataclass
class Job:
    """Who trains what where: the resolved config, the stored state of a resumed run, the device and precision,
    this process's place in a torchrun job, the run folder, and rank 0's progress bars and log."""

    cfg: TrainConfig
    state: dict | None
    where: torch.device
    amp: str
    world: World
    out: Path
    track: object
    log: object
    table: pd.DataFrame  # the data set, its labels chosen (--merge, --classes)
    labels: LabelSet


def labelled_data(cfg: TrainConfig, asked_task: str, log) -> tuple[TrainConfig, pd.DataFrame, LabelSet]:
    """The data set with its labels chosen, its label set, and the config's task for it: a set whose labels are
    benign and malignant trains the binary task unless --task says otherwise."""
    table = chosen_table(asdict(cfg), log)
    if not_classes := sorted(set(table["dx"]) & set(NOT_A_CLASS)):
        raise DermcliError(f"{', '.join(not_classes)} is not a class to learn: leave its images out with --classes ... --drop-other")
    labels = label_set(table, cfg.malignant, log)
    if not asked_task and cfg.task == "multiclass" and is_binary_set(labels):
        log("the data's labels are benign and malignant: training the binary task")
        cfg = replace(cfg, task="binary")
    if cfg.task == "binary" and labels.malignant is None:
        raise DermcliError("--task binary needs the benign/malignant grouping of the classes: give --malignant NAME,...")
    return cfg, table, labels


def start_job(cfg: TrainConfig, resume: bool, overwrite: bool, resume_epochs: int | None, track, log, device: str) -> Job:
    """The config (a resumed run's own), the device and precision, the torchrun job, and the run folder."""
    state = None
    if resume:
        state = read_checkpoint(Path(cfg.out) / "last.pt")
        cfg = TrainConfig.from_dict({**state["meta"]["config"], "out": cfg.out, **({"epochs": resume_epochs} if resume_epochs is not None else {})})
    asked_task, cfg = cfg.task, cfg.resolved()
    cfg, table, labels = labelled_data(cfg, asked_task, log)
    where = torch.device(resolve_device(device))
    amp = resume_amp(cfg.amp, where, log) if state else resolve_amp(cfg.amp, where)  # cfg keeps what was asked
    if cfg.sync_bn and where.type != "cuda":
        raise DermcliError("--sync-bn needs CUDA: PyTorch's SyncBatchNorm runs on GPUs only")
    world = join_job(where)
    if state is not None and state["training_state"].get("processes", 1) != world.size:
        raise DermcliError(f"{cfg.out} was trained by {state['training_state'].get('processes', 1)} processes, this job has {world.size}: "
                           "resume with the same number (torchrun --nproc-per-node), so the global batch stays the same")
    track, log = world.quiet(track, log)
    out = prepare_run(cfg, resume, overwrite) if world.main else Path(cfg.out)
    return Job(cfg, state, where, amp, world, out, track, log, table, labels)


def resume_amp(asked: str, where, log) -> str:
    """The precision a resumed run asked for, on the device it resumes on: its default there when the device lacks
    it (an fp16 GPU run resumed on a CPU), said in the log."""
    try:
        return resolve_amp(asked, where)
    except DermcliError:
        amp = resolve_amp("", where)
        log(f"--amp {asked} was asked for this run, which {torch.device(where).type} cannot run: resuming with {amp}")
        return amp


def build_model(job: Job):
    """The model on its device, from its starting weights or the resumed state, and its parts per --freeze value."""
    cfg = job.cfg
    torch.manual_seed(cfg.seed)
    torch.use_deterministic_algorithms(cfg.deterministic)
    backend = get_backend(cfg.model)
    model = backend.build(num_outputs(cfg.task, job.labels.classes), cfg.model_options())
    if job.state is None:  # before anything is written: a model that cannot start leaves no half-made run behind
        backend.initialise(model, {**cfg.model_options(), "preprocessing": cfg.preprocessing}, job.log)  # --init layouts check it
        if cfg.teacher:
            check_teacher(Path(cfg.teacher), list(class_names(cfg.task, job.labels.classes)))
    else:
        model.load_state_dict(job.state["state_dict"])
    model.to(job.where, memory_format=torch.channels_last)
    # Cut once per --freeze value, after the move (a cut refers to the model's tensors); cutting here also fails
    # a --freeze point the model cannot be cut at before anything is written.
    parts = functools.cache(lambda freeze: backend.split_frozen(model, freeze))
    parts(cfg.freeze)
    if cfg.fp16_frozen and job.state is None:
        round_to_half(parts(cfg.freeze)[0])
    return model, parts


