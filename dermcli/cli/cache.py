"""`dermcli cache [clean]`: the cache folder's size by kind, and removing what is not needed."""

from typing import Annotated, Optional

import typer

from dermcli.cli.console import console

cache_app = typer.Typer(add_completion=False, invoke_without_command=True, help="Show the cache's size by kind; `cache clean` removes files.")


def _size(n: int) -> str:
    return f"{n / 2**30:.2f} GB" if n >= 2**30 else f"{n / 2**20:.1f} MB"


@cache_app.callback()
def show(context: typer.Context) -> None:
    """Show the cache folder's size by kind: decoded images, frozen-layer features, teacher logits, ONNX graphs."""
    if context.invoked_subcommand:
        return
    from dermcli.data.cache import cache_dir
    from dermcli.data.cache_files import DESCRIPTIONS, usage

    rows = usage()
    console.print(f"cache: {cache_dir()} (set $DERMCLI_CACHE_DIR to move it)", highlight=False)
    for u in rows:
        console.print(f"  {u.kind:<9} {DESCRIPTIONS[u.kind]:<22} {u.files:>5} files {_size(u.bytes):>10}", highlight=False)
    console.print(f"  {'total':<32} {sum(u.files for u in rows):>5} files {_size(sum(u.bytes for u in rows)):>10}", highlight=False)


@cache_app.command("clean")
def clean_command(
    older_than: Annotated[Optional[float], typer.Option(help="Only files not used for this many days.")] = None,
    kind: Annotated[Optional[list[str]], typer.Option(help="Only this kind (repeatable): images, features, teacher or onnx.")] = None,
) -> None:
    """Remove cached files (safe while other dermcli processes run: files being written are left alone)."""
    from dermcli.data.cache_files import clean

    removed = clean(kind or None, older_than)
    console.print(f"removed {removed.files} files, {_size(removed.bytes)}", highlight=False)
