"""The command line: a thin Typer layer over the plain functions, a fast path for predict, and rendering."""
