"""`dermcli` and `python -m dermcli`.

The main job, `dermcli predict IMAGE... [options]`, is parsed here without Typer: importing Typer (and
the pydantic it loads) and building the commands take 0.15 s of a 0.4 s cold start. Anything else
(--help, other commands, `--opt=value` forms, repeated or unknown options) goes to the Typer CLI, which
also words every usage error.
"""

import sys
from pathlib import Path

# Typer's `predict` options (tests keep the two in step): option -> (parameter, converter; None = flag)
PREDICT_OPTIONS = {"--weights": ("weights", Path), "--model": ("model", str), "--threshold": ("threshold", float),
                   "--json": ("as_json", None), "--out": ("out", str), "--engine": ("engine", str), "--tta": ("tta", str),
                   "--device": ("device", str), "--explain": ("explain", Path), "--native-resolution": ("native_resolution", None)}


def plain_predict_call(args: list[str]) -> dict | None:
    """predict_command's keyword arguments for `predict ...` in its plain form, else None."""
    if args[:1] != ["predict"]:
        return None
    call, inputs, tokens = {}, [], iter(args[1:])
    for token in tokens:
        if not token.startswith("-"):
            inputs.append(token)
            continue
        if token not in PREDICT_OPTIONS or PREDICT_OPTIONS[token][0] in call:
            return None
        name, convert = PREDICT_OPTIONS[token]
        if convert is None:
            call[name] = True
            continue
        value = next(tokens, None)
        if value is None or value.startswith("-"):
            return None
        try:
            call[name] = convert(value)
        except ValueError:
            return None
    return {"inputs": inputs, **call} if inputs else None


def main() -> None:
    if (call := plain_predict_call(sys.argv[1:])) is not None:
        from dermcli.cli.console import predict_command, run_guarded

        run_guarded(predict_command, **call)
    from dermcli.cli.app import main as typer_main

    typer_main()


if __name__ == "__main__":
    main()
