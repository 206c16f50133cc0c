"""`dermcli models`: the shipped models with their test figures, and every model `--model` accepts."""

import difflib
from typing import Annotated, Optional

import typer

from dermcli.cli.console import console
from dermcli.core.errors import DermcliError

NOTE = ("cnn and resnet50 are the model cards' (resnet50: torchvision's ResNet50 with the binary card's head; "
        "--head linear for torchvision's own). torchvision's parameter counts include ImageNet's 1000-class head, "
        "which dermcli replaces; timm's are known once built.")


def architectures(timm: bool) -> list[dict]:
    """Every architecture --model accepts (building the cards' two counts their parameters): needs torch."""
    from dermcli.models.checkpoint import num_outputs
    from dermcli.models.registry import get_backend
    from dermcli.models.torchvision_zoo import catalogue

    cards = [get_backend(name) for name in ("cnn", "resnet50")]
    rows = [{"model": b.name, "parameters": sum(p.numel() for p in b.build(num_outputs(b.default_task), {}).parameters()),
             "input_size": b.input_size, "cached": None} for b in cards] + catalogue()
    if timm:
        from dermcli.models.timm_zoo import catalogue as timm_catalogue

        rows += timm_catalogue()
    return rows


def shipped_table(match: str | None):
    from rich.table import Table

    from dermcli.evaluation.card import card_headline
    from dermcli.evaluation.formatting import num
    from dermcli.inference.predict import SHIPPED

    shipped = Table("shipped", "weights", "test accuracy", "macro-F1", "malignant ROC-AUC", title="Shipped models (--model NAME)")
    for name, path in SHIPPED.items():
        if (match is None or match in name) and (h := card_headline(path)):
            shipped.add_row(name, path.name, num(h["accuracy"]), num(h["macro_f1"]), num(h["malignant_roc_auc"]))
    return shipped


def models(
    match: Annotated[Optional[str], typer.Argument(help="Show only models whose name contains this text.")] = None,
    timm: Annotated[bool, typer.Option("--timm", help="Also list timm's pretrained models (needs timm installed).")] = False,
):
    """List the models `--model` accepts: parameters, default input size, pretrained weights cached here."""
    from rich.table import Table

    try:
        rows = architectures(timm)
    except ModuleNotFoundError as e:
        if e.name != "torch":
            raise
        rows = None  # the light install: its shipped models only
    shipped = shipped_table(match)
    shown = [r for r in rows or [] if match is None or match in r["model"]]
    if not (shipped.row_count if rows is None else shown):
        from dermcli.inference.predict import SHIPPED

        names = list(SHIPPED) if rows is None else [r["model"] for r in rows]
        close = difflib.get_close_matches(match, names, n=3, cutoff=0.0)
        raise DermcliError(f"no model name contains {match!r}" + (f"; closest: {', '.join(close)}" if close else "")
                           + ("" if timm else " (timm's models are listed with --timm)"))
    if shipped.row_count:
        console.print(shipped)
    if rows is None:
        console.print('The other architectures --model accepts are listed with torch: pip install "dermcli[train]"', markup=False)
        return
    table = Table("model", "parameters", "input", "weights cached here")
    for r in shown:
        table.add_row(r["model"], f"{r['parameters'] / 1e6:.1f}M" if r["parameters"] else "—", str(r["input_size"] or "—"),
                      {True: "yes", False: "no", None: "—"}[r["cached"]])
    console.print(table)
    console.print(NOTE)
