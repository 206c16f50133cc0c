"""Terminal output shared by the Typer CLI and its fast `predict` path: consoles, progress bars,
one-line errors and the rendering of predictions. Imports Rich, never Typer; the work of each command (torch,
pandas, numpy behind it) is imported inside it, so a cold `predict` loads only what it uses."""

import json
import os
import sys
import traceback
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from dermcli.core.errors import DermcliError
from dermcli.core.files import ensure_writable_dir, ensure_writable_file, write_text

console = Console(soft_wrap=True)  # one message, one line, whatever the terminal width
err_console = Console(stderr=True, soft_wrap=True)


@contextmanager
def progress_bars():
    """Yield track(iterable, description, total) drawing Rich progress bars (nested loops nest).

    The bars start on the first track() call: a one-image predict never loads or starts them. Without a terminal
    (a file, CI, nohup) no bar is drawn: plain_progress logs lines instead.
    """
    progress = None

    def track(iterable, description: str, total: int | None = None):
        nonlocal progress
        if not err_console.is_terminal:
            yield from plain_progress(iterable, description, total)
            return
        if progress is None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
            progress = Progress(*columns, console=err_console, transient=True)
            progress.start()
        task = progress.add_task(description, total=total)
        for item in iterable:
            yield item
            progress.advance(task)
        progress.remove_task(task)

    try:
        yield track
    finally:
        if progress is not None:
            progress.stop()


def plain_progress(iterable, description: str, total: int | None, every: float = 30.0, clock=None, out=None):
    """Progress as log lines, for output that is not a terminal: once a loop has run `every` seconds, one at every
    tenth of `total` and at least every `every` seconds, each with the count, the rate and the time left (a loop
    shorter than that stays silent, as a bar would have come and gone)."""
    import time

    clock, out = clock or time.monotonic, out or log
    start = last = clock()
    tenth = max(1, total // 10) if total else None
    for done, item in enumerate(iterable, 1):
        yield item
        now = clock()
        if now - start >= every and ((tenth and (done % tenth == 0 or done == total)) or now - last >= every):
            rate = done / max(now - start, 1e-9)
            left = f", about {(total - done) / rate:.0f} s left" if total else ""
            out(f"{description}: {done}/{total or '?'} ({rate:.3g}/s{left})")
            last = now


def log(message: str) -> None:
    err_console.print(message, highlight=False)


# The libraries of the extras (pyproject.toml) -> the extra that installs them: a command needing one that is absent
# names the extra in one line instead of failing on an import
EXTRA_OF = {"torch": "train", "torchvision": "train", "torchcam": "train", "onnx": "train", "timm": "timm",
            "fastapi": "serve", "uvicorn": "serve", "tensorboard": "track", "mlflow": "track"}


def run_guarded(command, *args, **kwargs) -> None:
    """Run a command and exit with its status (see `guarded_status`); a process of a torchrun job leaves it first."""
    try:
        status = guarded_status(command, *args, **kwargs)
    except Exception:  # DERMCLI_DEBUG's traceback: printed, then the job left as any other failure
        if not joined_job():
            raise
        traceback.print_exc()
        status = 2
    if joined_job():
        from dermcli.runtime.distributed import leave

        leave(status)
    sys.exit(status)


def joined_job() -> bool:
    """Whether this process joined a torchrun job; torch.distributed not loaded, it did not (and `--help` stays light)."""
    dist = sys.modules.get("torch.distributed")
    return dist is not None and dist.is_initialized()


def guarded_status(command, *args, **kwargs) -> int:
    """A command's exit status: a DermcliError is one red line (1, or its exit_code), Ctrl-C is 130, a bug of
    ours is one line too (2) unless DERMCLI_DEBUG is set; an int return is the status."""
    try:
        return command(*args, **kwargs) or 0
    except DermcliError as e:
        err_console.print(f"[red]error:[/red] {escape(str(e))}", highlight=False)  # "dermcli[timm]" is no markup
        return getattr(e, "exit_code", 1)
    except KeyboardInterrupt:  # files are written atomically, so stopping here leaves nothing half-written
        err_console.print("interrupted", highlight=False)
        return 130
    except BrokenPipeError:  # `dermcli predict ... | head -1`: the reader has gone, so end quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nor complain when Python flushes stdout at exit
        return 0
    except Exception as e:
        if os.environ.get("DERMCLI_DEBUG"):
            raise
        # the package itself absent, not a part of it (a broken install of torch is no missing extra)
        if isinstance(e, ModuleNotFoundError) and (extra := EXTRA_OF.get(e.name or "")):
            needed = escape(f'pip install "dermcli[{extra}]"')
            err_console.print(f"[red]error:[/red] this needs {e.name}, which dermcli's light install leaves out: {needed}", highlight=False)
            return 1
        err_console.print(f"[red]internal error:[/red] {type(e).__name__}: {escape(str(e))} (set DERMCLI_DEBUG=1 for the traceback)", highlight=False)
        return 2


def predict_command(inputs: list[str], weights: Path | None = None, model: str | None = None, threshold: float | None = None,
                    as_json: bool = False, out: str | Path | None = None, engine: str = "auto", tta: str | None = None,
                    device: str = "auto", explain: Path | None = None, native_resolution: bool = False) -> int:
    """`dermcli predict`: print a verdict per image (and with `explain`, write a Grad-CAM figure of each printed
    prediction, over the same views, and explanations.csv into that folder); 1 if any file could not be read, else 0."""
    from dermcli.inference.predict import DISCLAIMER, prediction_record
    from dermcli.inference.predict import predict as run_predict

    if out is not None:
        out = ensure_writable_file(out, "--out", "predictions.csv")
    if explain is not None:
        ensure_writable_dir(explain)
    with progress_bars() as track:
        results, problems = run_predict(inputs, weights, model, threshold, engine, track=track, log=log, tta=tta, device=device,
                                        native_resolution=native_resolution)
        if explain is not None and results:
            from dermcli.inference.explain_images import explain as run_explain

            run_explain([p.image for p in results], explain, weights, model, track=track, tta=tta, printed=results,
                        native_resolution=native_resolution)
    for p in results:
        if as_json:
            print(json.dumps(prediction_record(p)))
        else:
            render_prediction(p)
        if p.unusual:
            err_console.print(f"warning: {p.image} is unlike the training images (distance {p.ood_score:.4g} > {p.ood_threshold:.4g}): "
                              "is it a dermoscopic image of a skin lesion? Treat this prediction with extra caution.", highlight=False)
    if out:
        write_predictions_csv(out, results)
    for path, problem in problems:
        err_console.print(escape(f"skipped {path}: {problem}"), highlight=False)
    if not as_json:
        console.print(f"{len(results)} predicted, {len(problems)} failed{f'; figures in {explain}' if explain and results else ''}. "
                      f"{DISCLAIMER}", highlight=False)
    return 1 if problems else 0


def render_prediction(p) -> None:
    from rich.table import Table

    console.print(f"[bold]{p.image}[/bold]", highlight=False)
    if p.label in ("MALIGNANT", "BENIGN"):
        console.print(f"Prediction: {p.label}\nConfidence: {p.confidence:.1%}  (malignant score {p.malignant_score:.3f}, threshold {p.threshold:.3f})")
        return
    table = Table("class", "probability")
    for name, value in p.probabilities.items():
        table.add_row(f"[bold]{name}[/bold]" if name == p.label else name, f"{value:.1%}")
    console.print(f"Prediction: {p.label} ({p.confidence:.1%})")
    console.print(table)
    if p.malignant_score is not None:
        verdict = "MALIGNANT" if p.malignant else "BENIGN"
        console.print(f"Malignant score {p.score_label}: {p.malignant_score:.3f} -> {verdict} at threshold {p.threshold:.3f}")


def write_predictions_csv(path: Path, results) -> None:
    import pandas as pd

    from dermcli.inference.predict import prediction_row

    rows = [{**prediction_row(p), "threshold": p.threshold,
             **({"ood_score": round(p.ood_score, 4), "unusual": p.unusual} if p.ood_score is not None else {})} for p in results]
    write_text(path, pd.DataFrame(rows).to_csv(index=False))


def show_report(r: dict, folder: Path) -> None:
    from rich.table import Table

    from dermcli.evaluation.formatting import num

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
    if r["operating_points"]:  # none without a benign/malignant view
        console.print(points)
    c = r["calibration"]
    console.print(f"ECE (15 bins): {c['ece_before']:.4f} before, {c['ece_after']:.4f} after temperature scaling (T = {c['temperature']:.3f})")
    if "unusual" in r:
        from dermcli.evaluation.report import unusual_line

        console.print(unusual_line(r["unusual"]))
    console.print(f"reports written to {folder}")
