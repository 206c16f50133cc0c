"""`dermcli runs DIR...`: the run folders below DIR side by side (evaluation.runs), as a table, CSV or JSON."""

import csv
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from dermcli.cli.console import console
from dermcli.core.errors import DermcliError

OTHER_SPLIT = "*"


def runs(
    folders: Annotated[list[Path], typer.Argument(help="Folders to search: every run folder at or below them is a row.")],
    sort: Annotated[str | None, typer.Option(help="Sort by this column (text A to Z, numbers largest first), e.g. test_macro_f1.")] = None,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV instead of a table.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
):
    """Compare runs: model, data, split, epochs, best validation and test figures, wall time; from the run folders alone."""
    from dermcli.evaluation.runs import COLUMNS, run_table  # inside, as every command's work, though it loads nothing heavy

    if as_csv and as_json:
        raise DermcliError("--csv and --json: give one")
    rows = run_table(folders, sort)
    if as_json:
        console.print_json(json.dumps(rows))
    elif as_csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=[*COLUMNS, "other_split"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    else:
        show_table(rows, COLUMNS)


def show_table(rows: list[dict], columns: tuple[str, ...]) -> None:
    from rich.table import Table

    table = Table()
    for c in columns:  # val_/test_ over the figure's name keeps the table narrow, and the column's --sort name whole
        table.add_column(c.replace("val_", "val_\n", 1).replace("test_", "test_\n", 1), overflow="fold")
    for r in rows:
        table.add_row(*(cell(r, c) for c in columns))
    console.print(table)
    if any(r["other_split"] for r in rows):
        console.print(f"{OTHER_SPLIT} another split than most runs': its figures are of other images, not comparable with the rest.",
                      highlight=False)


def cell(row: dict, column: str) -> str:
    value = row[column]
    if value is None:
        return "—"
    if column == "split":
        return value + (f" {OTHER_SPLIT}" if row["other_split"] else "")
    if column == "wall_time":
        minutes, seconds = divmod(round(value), 60)
        return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m{seconds:02d}s"
    return f"{value:.3f}" if isinstance(value, float) else str(value)
