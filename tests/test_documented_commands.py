"""Every `dermcli …` command in the README's and docs' code blocks parses against the real CLI, as written: each
command exists, each option exists, each value is accepted (types, choices and ranges) and nothing required is
missing. Parsing runs the options' checks but not the commands."""

import re
import shlex

import pytest
import typer
from typer.main import get_command

from dermcli.cli.app import app
from tests.conftest import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def documented_commands() -> list[tuple[str, str]]:
    """(file:line, command) for every line of a code block (fenced or indented) that runs dermcli."""
    found = []
    for doc in DOCS:
        fenced = False
        for number, line in enumerate(doc.read_text().splitlines(), 1):
            if line.strip().startswith("```"):
                fenced = not fenced
                continue
            code = line.strip() if fenced or line.startswith("    ") else ""
            for part in re.split(r"&&|;|\|", code):
                part = part.strip()
                if part.startswith("dermcli ") and "python -m" not in part:
                    found.append((f"{doc.relative_to(REPO)}:{number}", part))
    return found


def parse(command: str) -> None:
    words = shlex.split(command, comments=True)[1:]
    group = get_command(app)
    if not words or words[0].startswith("-"):
        group.make_context("dermcli", words)  # the group's own options (--version, -h)
        return
    name, *rest = words
    sub = group.commands.get(name)
    assert sub is not None, f"no command {name!r}"
    if hasattr(sub, "commands") and rest and not rest[0].startswith("-"):
        name, sub, rest = rest[0], sub.commands.get(rest[0]), rest[1:]
        assert sub is not None, f"no command {name!r}"
    sub.make_context(name, rest)


COMMANDS = documented_commands()


def test_the_docs_hold_commands_to_check():
    assert len(COMMANDS) > 30


@pytest.mark.parametrize("where, command", COMMANDS, ids=[w for w, _ in COMMANDS])
def test_a_documented_command_parses_as_written(where, command, monkeypatch):
    monkeypatch.setenv("DERMCLI_SERVE_TOKEN", "")
    try:
        parse(command)
    except typer.Exit:
        pass  # --help, --version
    except Exception as e:  # the CLI's usage errors (Typer's own copy of click's classes), or a check's DermcliError
        message = e.format_message() if hasattr(e, "format_message") else str(e)
        pytest.fail(f"{where}: `{command}`: {message}")
