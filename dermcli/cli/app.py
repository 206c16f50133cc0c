"""The `dermcli` command: parse options, call the plain functions, render results. No logic here.

Heavy libraries (torch, pandas, matplotlib, torchvision, timm) are imported inside commands so `--help` is quick.
"""

import inspect
from pathlib import Path
from typing import Annotated, Optional

import typer

from dermcli import __version__
from dermcli.cli.cache import cache_app
from dermcli.cli.catalogue import models
from dermcli.cli.console import console, log, predict_command, progress_bars, run_guarded, show_report
from dermcli.cli.options import DEVICE, ENGINE, MODEL, TTA, WEIGHTS, config_options, field_option, ranged
from dermcli.cli.runs import runs
from dermcli.cli.serve import serve
from dermcli.core.errors import DermcliError
from dermcli.training.config import TrainConfig  # plain Python, no numpy: --help stays quick

NATIVE_RESOLUTION = ("Skip bringing inputs larger than the training images down to their resolution first "
                     "(models trained on full-resolution images, comparisons).")

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, context_settings={"help_option_names": ["-h", "--help"]},
                  help="Train, evaluate and run HAM10000 skin-lesion classifiers. Research use only.")


def show_version(given: bool) -> None:
    if given:
        console.print(f"dermcli {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def options(version: Annotated[bool, typer.Option("--version", help="Print dermcli's version and exit.", is_eager=True,
                                                  callback=show_version)] = False) -> None:
    """Train, evaluate and run HAM10000 skin-lesion classifiers. Research use only."""


def train(config: Optional[Path], folds: Optional[int], resume: Optional[Path], device: str, overwrite: bool, **given) -> None:
    """Train a model on a lesion-level split; writes the run folder.

    Options come from --config FILE (TOML, or a run's config.json), overridden by the flags given."""
    from dermcli.training.config import read_config_file
    from dermcli.training.crossval import is_cv_run, train_folds
    from dermcli.training.run import train as run_training

    values = {**(read_config_file(config) if config else {}), **{k: v for k, v in given.items() if v is not None}}
    if resume is None and not (values.get("data") and values.get("out")):
        raise DermcliError("train needs --data and --out (as flags or in --config), or --resume RUN_DIR")
    cfg = TrainConfig(**{**values, "out": str(resume)}) if resume is not None else TrainConfig(**values)
    if folds or (resume is not None and is_cv_run(resume)):
        with progress_bars() as track:
            summary = train_folds(cfg, folds, resume=resume is not None, overwrite=overwrite, track=track, log=log, device=device)
        console.print(summary.read_text(), highlight=False)
        console.print(f"cross-validation summary: {summary}; out-of-fold report: {summary.parent / 'oof'}")
        return
    with progress_bars() as track:
        best = run_training(cfg, resume=resume is not None, overwrite=overwrite, resume_epochs=given.get("epochs"), track=track, log=log, device=device)
    if run_environment().main:
        console.print(f"best checkpoint: {best}")


def _train_command():
    """`train`'s signature for Typer: its own options, then every TrainConfig field as an option."""
    own = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation) for name, annotation, default in (
        ("config", Annotated[Optional[Path], typer.Option(help="A TOML file of any of the options below (or a run's config.json, to "
                                                                "reproduce it); flags given override it.")], None),
        ("folds", Annotated[Optional[int], ranged("folds", "Cross-validate: train one model per lesion-level fold of the non-test "
                                                            "images into OUT/fold_K (test split untouched).")], None),
        ("resume", Annotated[Optional[Path], typer.Option(help="Continue the run (or cross-validation) in this folder from where it stopped.")], None),
        ("device", Annotated[str, DEVICE], "auto"),
        ("overwrite", Annotated[bool, typer.Option(help="Allow training into a folder that already holds a run.")], False))]

    def command(**options):
        train(**options)

    command.__doc__ = train.__doc__
    command.__signature__ = inspect.Signature(own + config_options(TrainConfig))
    command.__annotations__ = {p.name: p.annotation for p in command.__signature__.parameters.values()}
    return command


app.command("train")(_train_command())
app.command()(serve)
app.command()(runs)
app.command()(models)
app.add_typer(cache_app, name="cache")


@app.command("eval")
def evaluate(
    weights: Annotated[Path, typer.Option(help="Checkpoint to evaluate (e.g. runs/cnn/best.pt).")],
    data: Annotated[Path, field_option(TrainConfig, "data")],
    out: Annotated[Path, typer.Option(help="Folder for predictions.csv and the reports.")],
    split: Annotated[str, typer.Option(help="train, val, test, or all (every image: external sets).")] = "test",
    split_file: Annotated[Optional[Path], typer.Option(help="split.csv to use; default: the one beside --weights.")] = None,
    images: Annotated[Optional[Path], field_option(TrainConfig, "images")] = None,
    format: Annotated[str, field_option(TrainConfig, "format")] = "",
    image_column: Annotated[str, field_option(TrainConfig, "image_column")] = "",
    label_column: Annotated[str, field_option(TrainConfig, "label_column")] = "",
    group_column: Annotated[str, field_option(TrainConfig, "group_column")] = "",
    label_map: Annotated[str, typer.Option(help="Match the set's labels to the model's classes: DATA=MODEL,... (e.g. AK=akiec,NEV=nv); "
                                                "default: by name, then the alias table of docs/data.md.")] = "",
    threshold: Annotated[Optional[float], ranged("threshold", "Override the checkpoint's val-tuned decision threshold.")] = None,
    batch_size: Annotated[int, ranged("eval:batch-size", "Images per forward pass.")] = 64,
    engine: Annotated[str, ENGINE] = "auto",
    tta: Annotated[Optional[str], TTA] = None,
    device: Annotated[str, DEVICE] = "auto",
    allow_overlap: Annotated[bool, typer.Option(help="Evaluate a set holding some of the model's own training or validation images (same id or pixels): they are reported apart, in OUT/overlap.")] = False,
    native_resolution: Annotated[bool, typer.Option("--native-resolution", help=NATIVE_RESOLUTION)] = False,
):
    """Evaluate a checkpoint on a split it never saw; writes predictions and reports."""
    from dermcli.data.dataset import Source
    from dermcli.evaluation.evaluate import MALIGNANT_VIEW
    from dermcli.evaluation.evaluate import evaluate as run_eval
    from dermcli.evaluation.report import write_reports

    if split not in ("train", "val", "test", "all"):
        raise DermcliError(f"--split {split!r} is not one of train, val, test, all")
    with progress_bars() as track:
        source = Source.of(data, format=format, images=images, image_column=image_column, label_column=label_column, group_column=group_column)
        folder = run_eval(weights, source, out, split=split, split_file=split_file, threshold=threshold, engine=engine,
                          batch_size=batch_size, tta=tta, device=device, allow_overlap=allow_overlap, label_map=label_map,
                          native_resolution=native_resolution, track=track, log=log)
    if run_environment().main:  # under torchrun, rank 0 writes the reports
        result = write_reports(folder)
        if "overlap" in result["info"]:
            write_reports(folder / result["info"]["overlap"]["folder"])
        if (folder / MALIGNANT_VIEW / "eval_info.json").is_file():  # labels the model lacks, in its binary view
            write_reports(folder / MALIGNANT_VIEW)
        show_report(result, folder)


@app.command()
def report(
    folder: Annotated[Path, typer.Argument(help="An eval output folder (holding predictions.csv).")],
    card: Annotated[bool, typer.Option(help="Also write MODEL_CARD.md from the eval, the run's files and the checkpoint metadata.")] = False,
):
    """Re-render an eval folder's reports and plots from its predictions.csv, without a model."""
    from dermcli.evaluation.report import write_reports

    show_report(write_reports(folder), folder)
    if card:
        from dermcli.evaluation.card import model_card

        console.print(f"model card: {model_card(folder)}")


@app.command()
def compare(
    folders: Annotated[list[Path], typer.Argument(help="Eval folders of the same images; each is compared with the first.")],
    out: Annotated[Path, typer.Option(help="Folder for compare.md, compare.json and compare_roc_pr.png.")] = Path("compare"),
):
    """Is B better than A? Paired lesion-level bootstrap differences, DeLong's and McNemar's tests."""
    from rich.markdown import Markdown

    from dermcli.evaluation.compare import write_compare

    result = write_compare(folders, out)
    console.print(Markdown(result["markdown"]))
    console.print(f"written to {out}")


@app.command()
def ensemble(
    weights: Annotated[list[Path], typer.Argument(help="Checkpoints of one task, class list, input size and split.")],
    data: Annotated[Path, typer.Option(help="The data set of their shared split (its validation images fit the ensemble's calibration).")],
    out: Annotated[Path, typer.Option(help="The ensemble checkpoint to write (its split goes to OUT-without-suffix/split.csv).")],
    target_sensitivity: Annotated[float, ranged("target-sensitivity", "Sensitivity the val-tuned decision threshold reaches.")] = 0.90,
    tta: Annotated[str, typer.Option(help="Default test-time augmentation of the ensemble (none, flips, dihedral), used in its calibration too.")] = "none",
    input_size: Annotated[int, ranged("input-size", "Run every member at this size, members trained at other sizes too (train small, "
                                             "test larger: FixRes); 0 = the members' shared size.", zero_allowed=True)] = 0,
):
    """Average several checkpoints into one, calibrated on their shared validation split."""
    from dermcli.training.ensemble import make_ensemble

    with progress_bars() as track:
        path = make_ensemble(weights, data, out, target_sensitivity, tta, track, log, input_size)
    console.print(f"ensemble checkpoint: {path}")


@app.command()
def export(
    weights: Annotated[Path, typer.Argument(help="Checkpoint to export.")],
    out: Annotated[Optional[Path], typer.Option(help="Where to write the .onnx; default: beside the weights.")] = None,
):
    """Export a checkpoint to ONNX (with its metadata), verified against PyTorch."""
    from dermcli.core.files import ensure_writable_file
    from dermcli.inference.export import TOLERANCE, export_onnx

    target = ensure_writable_file(out, "--out", weights.with_suffix(".onnx").name) if out else weights.with_suffix(".onnx")
    path = export_onnx(weights, target)
    console.print(f"wrote {path} (probabilities within {TOLERANCE} of PyTorch)")


@app.command()
def predict(
    inputs: Annotated[list[str], typer.Argument(help="Image files, folders (searched recursively) or glob patterns.")],
    weights: Annotated[Optional[Path], WEIGHTS] = None,
    model: Annotated[Optional[str], MODEL] = None,
    threshold: Annotated[Optional[float], ranged("threshold", "Override the checkpoint's malignant threshold.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object per image.")] = False,
    out: Annotated[Optional[str], typer.Option(help="Also write a CSV: image, label, probabilities, threshold (a name ending in / is a folder: refused).")] = None,
    engine: Annotated[str, ENGINE] = "auto",
    tta: Annotated[Optional[str], TTA] = None,
    device: Annotated[str, DEVICE] = "auto",
    explain: Annotated[Optional[Path], typer.Option(help="Also write a Grad-CAM figure of each printed prediction (its probabilities, map averaged over the same views) and explanations.csv into this folder (see `dermcli explain`).")] = None,
    native_resolution: Annotated[bool, typer.Option("--native-resolution", help=NATIVE_RESOLUTION)] = False,
):
    """Classify images; prints a verdict per image and exits 1 if any file could not be read."""
    if code := predict_command(inputs, weights, model, threshold, as_json, out, engine, tta, device, explain, native_resolution):
        raise typer.Exit(code)


@app.command()
def explain(
    inputs: Annotated[list[str], typer.Argument(help="Image files, folders (searched recursively) or glob patterns.")],
    out: Annotated[Path, typer.Option(help="Folder for one PNG per image (the image as the model saw it, the map over it, the probabilities) and explanations.csv.")],
    weights: Annotated[Optional[Path], WEIGHTS] = None,
    model: Annotated[Optional[str], MODEL] = None,
    method: Annotated[str, typer.Option(help="gradcam, gradcam++, smoothgradcam++, xgradcam, layercam, scorecam (torchcam), input-x-gradient or saliency.")] = "gradcam",
    target: Annotated[Optional[str], typer.Option(help="Class to explain (default: the predicted one; a binary model's is malignant).")] = None,
    layer: Annotated[Optional[str], typer.Option(help="Module to explain (default: the last spatial map, per backbone).")] = None,
    tta: Annotated[Optional[str], typer.Option(help="Views the probabilities and the map are averaged over: none, flips (4) or dihedral (8); default: the checkpoint's, as predict.")] = None,
    native_resolution: Annotated[bool, typer.Option("--native-resolution", help=NATIVE_RESOLUTION)] = False,
):
    """Show where the model looked: a class activation map (or saliency) over each image, with OUT/explanations.csv."""
    from dermcli.inference.explain_images import explain as run_explain

    with progress_bars() as track:
        written, problems = run_explain(inputs, out, weights, model, method, target, layer, track, tta,
                                        native_resolution=native_resolution, log=log)
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


def run_environment():
    """This process's place in a torchrun job, imported here, not above: runtime.distributed loads numpy, which
    `--help` does not need."""
    from dermcli.runtime.distributed import environment

    return environment()
