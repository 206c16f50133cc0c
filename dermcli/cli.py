"""The `dermcli` command: parse options, call the plain functions, render results. No logic here.

Heavy libraries (torch, pandas, matplotlib, torchvision, timm) are imported inside commands so `--help` is quick.
"""

from pathlib import Path
from typing import Annotated, Optional

import typer

from dermcli.console import console, log, predict_command, progress_bars, run_guarded
from dermcli.distributed import environment
from dermcli.errors import DermcliError
from dermcli.options import check, help_with_range


def ranged(name: str, text: str, **kwargs):
    """A numeric option whose help text and check both come from dermcli.options.RANGES[name]."""
    return typer.Option(help=help_with_range(name, text), callback=lambda value: check(name, value), **kwargs)


app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Train, evaluate and run HAM10000 skin-lesion classifiers. Research use only.")

@app.command()
def train(
    data: Annotated[Optional[Path], typer.Option(help="HAM10000 folder, ISIC ground-truth CSV or class-folder tree.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Run folder for best.pt, last.pt, split.csv, history.csv, config.json.")] = None,
    model: Annotated[str, typer.Option(help="cnn (28x28, 7-class), resnet50 (the binary card's), any torchvision classification model by name, or timm/NAME; see `dermcli models`.")] = "cnn",
    task: Annotated[str, typer.Option(help="multiclass or binary; empty = the backend's default.")] = "",
    epochs: Annotated[Optional[int], ranged("epochs", "Maximum number of epochs (default 30; with --resume, a new total).")] = None,
    batch_size: Annotated[int, ranged("batch-size", "Images per training step.")] = 64,
    lr: Annotated[float, ranged("lr", "AdamW learning rate.")] = 1e-3,
    weight_decay: Annotated[float, ranged("weight-decay", "AdamW weight decay.")] = 1e-4,
    scheduler: Annotated[str, typer.Option(help="plateau (ReduceLROnPlateau on the val metric) or cosine.")] = "plateau",
    patience: Annotated[int, ranged("patience", "Early stopping: epochs without val improvement.")] = 7,
    label_smoothing: Annotated[float, ranged("label-smoothing", "Label smoothing of the loss.")] = 0.0,
    ema: Annotated[float, ranged("ema", "Validate and keep a moving average of the weights with this decay (e.g. 0.999); 0 = off.")] = 0.0,
    class_weights: Annotated[str, typer.Option(help="Imbalance handling in the loss: none, sqrt or balanced.")] = "balanced",
    augment: Annotated[str, typer.Option(help="Train-time augmentation: dihedral (flips + 90-degree turns), flips, or none; plus colour jitter.")] = "dihedral",
    seed: Annotated[int, ranged("seed", "Seed for initialisation, shuffling and augmentation.")] = 42,
    split_seed: Annotated[int, ranged("split-seed", "Seed of the lesion-level 70/15/15 split.")] = 42,
    split_file: Annotated[Optional[Path], typer.Option(help="Reuse this split.csv instead of making one.")] = None,
    freeze: Annotated[str, typer.Option(help="none, backbone (head only, on cached features), or for resnet50 layer3 (layer4 + head train).")] = "none",
    fp16_frozen: Annotated[bool, typer.Option(help="Round the frozen layers to fp16 before training, so an fp16 copy loses nothing there.")] = False,
    pretrained: Annotated[bool, typer.Option(help="Start from the model's ImageNet weights (torchvision's weights API, or timm).")] = True,
    init: Annotated[Optional[Path], typer.Option(help="Start from a (partial) state dict in the model's own key names (torchvision's or timm's).")] = None,
    preprocessing: Annotated[str, typer.Option(help="unit, imagenet or caffe; empty = the backend's default.")] = "",
    strides: Annotated[str, typer.Option(help="resnet50: v1.5 (torchvision) or v1 (Caffe/Keras) stride placement.")] = "v1.5",
    head: Annotated[str, typer.Option(help="linear or card (the binary card's BN-dropout-512-256 head); empty = the model's default.")] = "",
    input_size: Annotated[Optional[int], ranged("input-size", "Square input size in pixels (default: the model's own, its weights').")] = None,
    target_sensitivity: Annotated[float, ranged("target-sensitivity", "Sensitivity the val-tuned decision threshold reaches.")] = 0.90,
    warmup_epochs: Annotated[int, ranged("warmup-epochs", "Staged fine-tuning: train the head alone (backbone frozen, features cached) for this many epochs, then unfreeze down to --freeze.")] = 0,
    finetune_lr: Annotated[Optional[float], ranged("finetune-lr", "Learning rate after the warm-up (default: --lr / 10).")] = None,
    deterministic: Annotated[bool, typer.Option(help="Force deterministic algorithms (repeatable CPU runs).")] = False,
    sync_bn: Annotated[bool, typer.Option(help="Under torchrun on GPUs: BatchNorm statistics over the global batch (SyncBatchNorm).")] = False,
    teacher: Annotated[Optional[Path], typer.Option(help="Knowledge distillation: also learn this trained 7-class checkpoint's softened probabilities on the same view of each image.")] = None,
    distill_weight: Annotated[float, ranged("distill-weight", "Share of the teacher's term in the loss (with --teacher).")] = 0.5,
    distill_temperature: Annotated[float, ranged("distill-temperature", "Softening temperature of teacher and student (with --teacher).")] = 2.0,
    folds: Annotated[Optional[int], ranged("folds", "Cross-validate: train one model per lesion-level fold of the non-test images into OUT/fold_K (test split untouched).")] = None,
    resume: Annotated[Optional[Path], typer.Option(help="Continue the run (or cross-validation) in this folder from where it stopped.")] = None,
    device: Annotated[str, typer.Option(help="auto (CUDA, else Apple MPS, else CPU), cpu, cuda, cuda:N or mps.")] = "auto",
    amp: Annotated[str, typer.Option(help="Mixed precision: bf16, fp16 (CUDA only) or none; default bf16 on GPUs that support it, else none.")] = "",
    overwrite: Annotated[bool, typer.Option(help="Allow training into a folder that already holds a run.")] = False,
):
    """Train a model on a lesion-level split; writes the run folder."""
    from dermcli.config import TrainConfig
    from dermcli.train import train as run_training

    if resume is None and (data is None or out is None):
        raise DermcliError("train needs --data and --out (or --resume RUN_DIR)")
    cfg = TrainConfig(data=str(data or ""), out=str(resume or out), model=model, task=task, epochs=30 if epochs is None else epochs, batch_size=batch_size, lr=lr,
                      weight_decay=weight_decay, scheduler=scheduler, patience=patience, label_smoothing=label_smoothing, ema=ema,
                      class_weights=class_weights, augment=augment, seed=seed, split_seed=split_seed, split_file=str(split_file or ""),
                      freeze=freeze, fp16_frozen=fp16_frozen, pretrained=pretrained, init=str(init or ""), preprocessing=preprocessing, strides=strides, head=head, input_size=input_size or 0,
                      target_sensitivity=target_sensitivity, deterministic=deterministic, sync_bn=sync_bn,
                      warmup_epochs=warmup_epochs, finetune_lr=finetune_lr or 0.0, amp=amp, teacher=str(teacher or ""),
                      distill_weight=distill_weight, distill_temperature=distill_temperature)
    from dermcli.crossval import is_cv_run, train_folds

    if folds or (resume is not None and is_cv_run(resume)):
        with progress_bars() as track:
            summary = train_folds(cfg, folds, resume=resume is not None, overwrite=overwrite, track=track, log=log, device=device)
        console.print(summary.read_text(), highlight=False)
        console.print(f"cross-validation summary: {summary}; out-of-fold report: {summary.parent / 'oof'}")
        return
    with progress_bars() as track:
        best = run_training(cfg, resume=resume is not None, overwrite=overwrite, resume_epochs=epochs, track=track, log=log, device=device)
    if environment().main:
        console.print(f"best checkpoint: {best}")


@app.command("eval")
def evaluate(
    weights: Annotated[Path, typer.Option(help="Checkpoint to evaluate (e.g. runs/cnn/best.pt).")],
    data: Annotated[Path, typer.Option(help="HAM10000 folder, ISIC ground-truth CSV or class-folder tree.")],
    out: Annotated[Path, typer.Option(help="Folder for predictions.csv and the reports.")],
    split: Annotated[str, typer.Option(help="train, val, test, or all (every image: external sets).")] = "test",
    split_file: Annotated[Optional[Path], typer.Option(help="split.csv to use; default: the one beside --weights.")] = None,
    images: Annotated[Optional[Path], typer.Option(help="Image folder of an ISIC CSV, when not beside it.")] = None,
    threshold: Annotated[Optional[float], ranged("threshold", "Override the checkpoint's val-tuned decision threshold.")] = None,
    batch_size: Annotated[int, ranged("eval:batch-size", "Images per forward pass.")] = 64,
    engine: Annotated[str, typer.Option(help="auto (ONNX Runtime if installed), onnx or torch.")] = "auto",
    tta: Annotated[Optional[str], typer.Option(help="Test-time augmentation: none, flips (4 views) or dihedral (8); default: the checkpoint's, else none.")] = None,
    device: Annotated[str, typer.Option(help="auto (CUDA, else Apple MPS, else CPU), cpu, cuda, cuda:N or mps.")] = "auto",
    allow_overlap: Annotated[bool, typer.Option(help="Evaluate a set holding some of the model's own training or validation images (same id or pixels): they are reported apart, in OUT/overlap.")] = False,
):
    """Evaluate a checkpoint on a split it never saw; writes predictions and reports."""
    from dermcli.evaluate import evaluate as run_eval
    from dermcli.report import write_reports

    if split not in ("train", "val", "test", "all"):
        raise DermcliError(f"--split {split!r} is not one of train, val, test, all")
    with progress_bars() as track:
        folder = run_eval(weights, data, out, split, split_file, images, threshold, engine, batch_size, track, log, tta, device, allow_overlap)
    if environment().main:  # under torchrun, rank 0 writes the reports
        result = write_reports(folder)
        if "overlap" in result["info"]:
            write_reports(folder / result["info"]["overlap"]["folder"])
        show_report(result, folder)


@app.command()
def report(
    folder: Annotated[Path, typer.Argument(help="An eval output folder (holding predictions.csv).")],
    card: Annotated[bool, typer.Option(help="Also write MODEL_CARD.md from the eval, the run's files and the checkpoint metadata.")] = False,
):
    """Re-render an eval folder's reports and plots from its predictions.csv, without a model."""
    from dermcli.report import write_reports

    show_report(write_reports(folder), folder)
    if card:
        from dermcli.card import model_card

        console.print(f"model card: {model_card(folder)}")


@app.command()
def compare(
    folders: Annotated[list[Path], typer.Argument(help="Eval folders of the same images; each is compared with the first.")],
    out: Annotated[Path, typer.Option(help="Folder for compare.md, compare.json and compare_roc_pr.png.")] = Path("compare"),
):
    """Is B better than A? Paired lesion-level bootstrap differences, DeLong's and McNemar's tests."""
    from rich.markdown import Markdown

    from dermcli.compare import write_compare

    result = write_compare(folders, out)
    console.print(Markdown(result["markdown"]))
    console.print(f"written to {out}")


@app.command()
def models(
    match: Annotated[Optional[str], typer.Argument(help="Show only models whose name contains this text.")] = None,
    timm: Annotated[bool, typer.Option("--timm", help="Also list timm's pretrained models (needs timm installed).")] = False,
):
    """List the models `--model` accepts: parameters, default input size, pretrained weights cached here."""
    from rich.table import Table

    from dermcli.models.torchvision_zoo import catalogue

    from dermcli.checkpoint import num_outputs
    from dermcli.models import get_backend

    cards = [get_backend(name) for name in ("cnn", "resnet50")]
    rows = [{"model": b.name, "parameters": sum(p.numel() for p in b.build(num_outputs(b.default_task), {}).parameters()),
             "input_size": b.input_size, "cached": None} for b in cards] + catalogue()
    if timm:
        from dermcli.models.timm_zoo import catalogue as timm_catalogue

        rows += timm_catalogue()
    table = Table("model", "parameters", "input", "weights cached here")
    for r in rows:
        if match is None or match in r["model"]:
            table.add_row(r["model"], f"{r['parameters'] / 1e6:.1f}M" if r["parameters"] else "—", str(r["input_size"] or "—"),
                          {True: "yes", False: "no", None: "—"}[r["cached"]])
    console.print(table)
    console.print("cnn and resnet50 are the model cards' (resnet50: torchvision's ResNet50 with the binary card's head; "
                  "--head linear for torchvision's own). torchvision's parameter counts include ImageNet's 1000-class head, "
                  "which dermcli replaces; timm's are known once built.")


@app.command()
def ensemble(
    weights: Annotated[list[Path], typer.Argument(help="Checkpoints of one task, class list, input size and split.")],
    data: Annotated[Path, typer.Option(help="The data set of their shared split (its validation images fit the ensemble's calibration).")],
    out: Annotated[Path, typer.Option(help="The ensemble checkpoint to write (its split goes to OUT-without-suffix/split.csv).")],
    target_sensitivity: Annotated[float, ranged("target-sensitivity", "Sensitivity the val-tuned decision threshold reaches.")] = 0.90,
    tta: Annotated[str, typer.Option(help="Default test-time augmentation of the ensemble (none, flips, dihedral), used in its calibration too.")] = "none",
):
    """Average several checkpoints into one, calibrated on their shared validation split."""
    from dermcli.ensemble import make_ensemble

    with progress_bars() as track:
        path = make_ensemble(weights, data, out, target_sensitivity, tta, track, log)
    console.print(f"ensemble checkpoint: {path}")


@app.command()
def export(
    weights: Annotated[Path, typer.Argument(help="Checkpoint to export.")],
    out: Annotated[Optional[Path], typer.Option(help="Where to write the .onnx; default: beside the weights.")] = None,
):
    """Export a checkpoint to ONNX (with its metadata), verified against PyTorch."""
    from dermcli.engine import TOLERANCE, export_onnx
    from dermcli.io import ensure_writable_file

    target = ensure_writable_file(out, "--out", weights.with_suffix(".onnx").name) if out else weights.with_suffix(".onnx")
    path = export_onnx(weights, target)
    console.print(f"wrote {path} (probabilities within {TOLERANCE} of PyTorch)")


def show_report(r: dict, folder: Path) -> None:
    from rich.table import Table

    from dermcli.formatting import num

    console.print(r["classification_report"], highlight=False)
    for title, rows in r["tables"].items():
        table = Table("Metric", "Value", title=title, title_justify="left")
        for row in rows:
            table.add_row(*row)
        console.print(table)
    points = Table("target sensitivity", "threshold", "sensitivity", "specificity", "PPV", "NPV", "F1",
                   title="Operating points (malignant vs benign)", title_justify="left")
    b = r["binary"]
    for p in r["operating_points"]:
        points.add_row(f"{p['target_sensitivity']:.2f}", *(num(p[k]) for k in ("threshold", "sensitivity", "specificity", "ppv", "npv", "f1")))
    points.add_row("[bold]model's threshold[/bold]", *(f"[bold]{num(b[k])}[/bold]" for k in ("threshold", "recall", "specificity", "precision", "npv", "f1")))
    console.print(points)
    c = r["calibration"]
    console.print(f"ECE (15 bins): {c['ece_before']:.4f} before, {c['ece_after']:.4f} after temperature scaling (T = {c['temperature']:.3f})")
    if "unusual" in r:
        from dermcli.report import unusual_line

        console.print(unusual_line(r["unusual"]))
    console.print(f"reports written to {folder}")


@app.command()
def predict(
    inputs: Annotated[list[str], typer.Argument(help="Image files, folders (searched recursively) or glob patterns.")],
    weights: Annotated[Optional[Path], typer.Option(help="Checkpoint; default: the shipped weights of --model.")] = None,
    model: Annotated[Optional[str], typer.Option(help="lite0 (default: two EfficientNet-Lite0 at 224, 7-class), cnn (28x28, 7-class) or resnet50 (binary): picks the shipped weights, or checks --weights.")] = None,
    threshold: Annotated[Optional[float], ranged("threshold", "Override the checkpoint's malignant threshold.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object per image.")] = False,
    out: Annotated[Optional[Path], typer.Option(help="Also write a CSV: image, label, probabilities, threshold.")] = None,
    engine: Annotated[str, typer.Option(help="auto (ONNX Runtime if installed), onnx or torch.")] = "auto",
    tta: Annotated[Optional[str], typer.Option(help="Test-time augmentation: none, flips (4 views) or dihedral (8); default: the checkpoint's, else none.")] = None,
    device: Annotated[str, typer.Option(help="auto (CUDA, else Apple MPS, else CPU), cpu, cuda, cuda:N or mps.")] = "auto",
    explain: Annotated[Optional[Path], typer.Option(help="Also write a Grad-CAM figure of each printed prediction (its probabilities, map averaged over the same views) and explanations.csv into this folder (see `dermcli explain`).")] = None,
):
    """Classify images; prints a verdict per image and exits 1 if any file could not be read."""
    if code := predict_command(inputs, weights, model, threshold, as_json, out, engine, tta, device, explain):
        raise typer.Exit(code)


@app.command()
def explain(
    inputs: Annotated[list[str], typer.Argument(help="Image files, folders (searched recursively) or glob patterns.")],
    out: Annotated[Path, typer.Option(help="Folder for one PNG per image (the image as the model saw it, the map over it, the probabilities) and explanations.csv.")],
    weights: Annotated[Optional[Path], typer.Option(help="Checkpoint; default: the shipped weights of --model.")] = None,
    model: Annotated[Optional[str], typer.Option(help="lite0 (default: two EfficientNet-Lite0 at 224, 7-class), cnn (28x28, 7-class) or resnet50 (binary): picks the shipped weights, or checks --weights.")] = None,
    method: Annotated[str, typer.Option(help="gradcam, gradcam++, smoothgradcam++, xgradcam, layercam, scorecam (torchcam), input-x-gradient or saliency.")] = "gradcam",
    target: Annotated[Optional[str], typer.Option(help="Class to explain (default: the predicted one; a binary model's is malignant).")] = None,
    layer: Annotated[Optional[str], typer.Option(help="Module to explain (default: the last spatial map, per backbone).")] = None,
    tta: Annotated[Optional[str], typer.Option(help="Views the probabilities and the map are averaged over: none, flips (4) or dihedral (8); default: the checkpoint's, as predict.")] = None,
):
    """Show where the model looked: a class activation map (or saliency) over each image, with OUT/explanations.csv."""
    from dermcli.explain_images import explain as run_explain

    with progress_bars() as track:
        written, problems = run_explain(inputs, out, weights, model, method, target, layer, track, tta)
    for path, problem in problems:
        console.print(f"skipped {path}: {problem}", style="red", highlight=False)
    console.print(f"{len(written)} explained, {len(problems)} failed; figures in {out}", highlight=False)
    if problems:
        raise typer.Exit(1)


class UsageError(DermcliError):
    exit_code = 2  # click's convention for a command line that does not parse


def run_app() -> int:
    """The Typer app, with a usage error as one line like every other error (Typer would draw a box)."""
    try:
        from typer._click import exceptions as click  # newer Typer carries its own copy of click
    except ImportError:
        from click import exceptions as click

    try:
        return typer.main.get_command(app).main(standalone_mode=False) or 0
    except click.NoArgsIsHelpError as e:
        e.show()  # `dermcli` alone prints the help
        return e.exit_code
    except click.ClickException as e:
        command = e.ctx.command_path if getattr(e, "ctx", None) else "dermcli"
        raise UsageError(f"{e.format_message()} (see `{command} --help`)") from None


def main() -> None:
    run_guarded(run_app)
