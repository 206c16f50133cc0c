"""Every option of every command, from Typer's own parameter list, fed values that must not change a
result's meaning silently: each is refused in one line naming the option, or accepted for a stated reason."""

import shutil
import sys
from pathlib import Path
from types import UnionType
from typing import Union, get_args, get_origin, get_type_hints

import pytest
import typer

from dermcli.__main__ import main
from dermcli.cli.app import app
from dermcli.core.options import RANGES
from dermcli.evaluation.evaluate import resolve_split_file
from dermcli.training.config import TrainConfig
from dermcli.training.run import train
from tests.conftest import REPO, make_ham

COMMANDS = typer.main.get_command(app).commands
FUNCTIONS = {info.name or info.callback.__name__: info.callback for info in app.registered_commands}
NUMERIC_VALUES = ("nan", "inf", "-inf", "0", "-1", "1e30", "99999999999999999999")

# Values of numeric options that are deliberately accepted, and why. Every other value in NUMERIC_VALUES is refused.
ACCEPTED = {
    ("train", "--weight-decay", "0"): "no weight decay is an ordinary choice",
    ("train", "--label-smoothing", "0"): "no label smoothing (the default)",
    ("train", "--ema", "0"): "0 turns the weight average off (the default)",
    ("train", "--seed", "0"): "0 is an ordinary seed",
    ("train", "--split-seed", "0"): "0 is an ordinary seed",
    ("train", "--warmup-epochs", "0"): "no warm-up: one stage (the default)",
    ("train", "--lr-warmup", "0"): "no learning-rate warm-up (the default)",
    ("eval", "--threshold", "0"): "every image called malignant: a valid, if extreme, operating point",
    ("predict", "--threshold", "0"): "every image called malignant: a valid, if extreme, operating point",
    ("serve", "--port", "0"): "0: a free port, chosen by the system",
    ("ensemble", "--input-size", "0"): "0: the members' shared size (the default)",
    ("train", "--input-size", "0"): "0: the model's own size (the default)",
    ("train", "--finetune-lr", "0"): "0: --lr / 10 (the default)",
}


def run(capsys, monkeypatch, *args: str) -> tuple[int, str]:
    """`dermcli ARGS` in this process through the console entry point (the fast predict path included)."""
    monkeypatch.setattr(sys, "argv", ["dermcli", *args])
    with pytest.raises(SystemExit) as stop:
        main()
    return stop.value.code, capsys.readouterr().err


def python_type(command: str, param) -> type:
    """The parameter's type as the command's function declares it, Annotated and Optional taken off."""
    hint = get_type_hints(FUNCTIONS[command])[param.name]
    return next(a for a in get_args(hint) if a is not type(None)) if get_origin(hint) in (Union, UnionType) else hint


def params_of(command: str, types: tuple[type, ...]) -> list:
    return [p for p in COMMANDS[command].params if python_type(command, p) in types]


def numeric_cases():
    return [(command, p.opts[0], value) for command in COMMANDS for p in params_of(command, (int, float)) for value in NUMERIC_VALUES]


def test_every_numeric_option_states_its_range_in_help():
    numeric = [(command, p) for command in COMMANDS for p in params_of(command, (int, float))]
    assert len(numeric) >= 12
    for command, param in numeric:
        assert "Range [" in param.help or "Range (" in param.help, f"{command} {param.opts[0]} has no range in dermcli.options"


@pytest.mark.parametrize("command, option, value", numeric_cases())
def test_numeric_options_refuse_what_is_out_of_range(capsys, monkeypatch, tmp_path, command, option, value):
    # Everything else points at nothing, so an accepted value ends in the "not found" error of the work itself.
    rest = {"train": ["--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run")],
            "eval": ["--weights", str(tmp_path / "none.pt"), "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "e")],
            "predict": [str(tmp_path / "none.jpg")],
            "serve": ["--weights", str(tmp_path / "none.pt")],
            "ensemble": [str(tmp_path / "a.pt"), str(tmp_path / "b.pt"), "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "e.pt")]}[command]
    code, err = run(capsys, monkeypatch, command, *rest, option, value)
    assert code != 0 and "internal error" not in err and "Traceback" not in err
    lines = err.strip().splitlines()
    if (command, option, value) in ACCEPTED:
        assert option not in err, err
    else:
        assert len(lines) == 1 and option in lines[0], err


def test_the_accepted_list_holds_only_cases_the_sweep_makes():
    assert set(ACCEPTED) <= set(numeric_cases())


@pytest.mark.parametrize("args, message", [
    (["predict", "examples/ISIC_0026531.jpg", "--threshold", "nan"], "--threshold nan: must be in [0, 1]"),
    (["predict", "examples/ISIC_0026531.jpg", "--threshold", "1.5"], "--threshold 1.5: must be in [0, 1]"),
    (["eval", "--weights", "weights/cnn_ham10000_7class.pt", "--data", "x", "--out", "e", "--threshold", "nan"], "--threshold nan"),
    (["predict", "examples", "--out", "examples"], "--out examples: is a folder; give a file name, e.g. examples/predictions.csv"),
    (["train", "--data", "x", "--out", "r", "--epochs", "0"], "--epochs 0: must be in [1, 100000]"),
    (["train", "--data", "x", "--out", "r", "--label-smoothing", "1.5"], "--label-smoothing 1.5: must be in [0, 1)"),
    (["train", "--data", "x", "--out", "r", "--batch-size", "1"], "--batch-size 1: must be in [2, 65536]"),
    (["train", "--data", "x", "--out", "r", "--lr", "-1"], "--lr -1.0: must be in (0, 10]"),
    (["train", "--data", "x", "--out", "r", "--target-sensitivity", "1.2"], "--target-sensitivity 1.2: must be in (0, 1)"),
    (["train", "--data", "x", "--out", "r", "--epochs", "1e9"], "Invalid value for '--epochs'"),
    (["train", "--data", "x", "--out", "r", "--no-such-option"], "No such option: --no-such-option"),
])
def test_the_issue_table_is_refused_in_one_line(capsys, monkeypatch, args, message):
    monkeypatch.chdir(REPO)
    code, err = run(capsys, monkeypatch, *args)
    assert code in (1, 2) and err.strip().splitlines() == [err.strip()] and message in err, err


def test_plain_functions_check_the_same_ranges(tmp_path):
    from dermcli.core.errors import DermcliError
    from dermcli.inference.predict import predict

    with pytest.raises(DermcliError, match="--epochs 0"):
        TrainConfig(data="x", out="y", epochs=0).resolved()
    with pytest.raises(DermcliError, match="--threshold nan"):
        predict(["examples/ISIC_0026531.jpg"], threshold=float("nan"))
    assert set(RANGES) >= {"epochs", "batch-size", "lr", "threshold", "ema", "label-smoothing", "target-sensitivity"}


def test_shipped_weights_find_the_split_in_the_folder_named_after_them():
    weights = REPO / "weights" / "cnn_ham10000_7class.pt"
    assert resolve_split_file(weights, None) == REPO / "weights" / "cnn_ham10000_7class" / "split.csv"


# --- path options ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Generated data, a trained 1-epoch run laid out as shipped weights are (NAME.pt + NAME/), an eval folder and two images."""
    root = tmp_path_factory.mktemp("paths")
    data = make_ham(root / "ham", lesions_per_class=6)
    run = root / "run"
    train(TrainConfig(data=str(data), out=str(run), epochs=1, batch_size=16))
    shipped = root / "weights" / "tiny.pt"
    (shipped.parent / "tiny").mkdir(parents=True)
    shutil.copy(run / "best.pt", shipped)
    shutil.copy(run / "split.csv", shipped.parent / "tiny" / "split.csv")
    few = root / "few"  # predict and explain write a figure per image: two images keep each case quick
    few.mkdir()
    for image in sorted((data / "HAM10000_images_part_1").glob("*.jpg"))[:2]:
        shutil.copy(image, few / image.name)
    (root / "notes.txt").write_text("not what any option wants\n")
    (root / "empty").mkdir()
    return {"root": root, "data": data, "run": run, "weights": shipped, "few": few}


def base_command(command: str, ws: dict, tmp_path) -> list[str]:
    """A command line that works, to which one path option at a time is changed."""
    return {
        "train": ["train", "--data", str(ws["data"]), "--out", str(tmp_path / "run"), "--epochs", "1", "--batch-size", "16"],
        "eval": ["eval", "--weights", str(ws["weights"]), "--data", str(ws["data"]), "--out", str(tmp_path / "eval"), "--engine", "torch"],
        "predict": ["predict", str(ws["few"]), "--weights", str(ws["weights"]), "--engine", "torch"],
        "explain": ["explain", str(ws["few"]), "--weights", str(ws["weights"]), "--out", str(tmp_path / "maps")],
        "report": ["report", str(ws["root"] / "evaluated")],
        "export": ["export", str(ws["weights"]), "--out", str(tmp_path / "m.onnx")],
        "compare": ["compare", str(ws["root"] / "evaluated"), str(ws["root"] / "evaluated"), "--out", str(tmp_path / "compared")],
        "ensemble": ["ensemble", str(ws["weights"]), str(ws["weights"]), "--data", str(ws["data"]), "--out", str(tmp_path / "ens.pt")],
        "serve": ["serve", "--weights", str(ws["weights"]), "--port", "0"],
        "runs": ["runs", str(ws["root"])],  # never run unchanged: it would serve until stopped
    }[command]


def path_cases():
    cases = []
    for command in COMMANDS:
        for param in params_of(command, (Path, list[str], list[Path])):
            for kind in ("missing", "folder", "file", "unwritable"):
                cases.append((command, param.opts[0], kind))
    return cases


@pytest.mark.slow
def test_base_commands_work(capsys, monkeypatch, workspace, tmp_path):
    """The sweep below means something only if the unchanged commands succeed (eval first: report reads its folder)."""
    evaluated = workspace["root"] / "evaluated"
    for args in (base_command("eval", workspace, tmp_path) + ["--out", str(evaluated)],
                 *(base_command(c, workspace, tmp_path) for c in ("train", "predict", "explain", "report", "export", "compare", "ensemble"))):
        code, err = run(capsys, monkeypatch, *args)
        assert code == 0, (args, err)


@pytest.mark.parametrize("command, option, kind", path_cases())
@pytest.mark.slow
def test_path_options_never_end_in_an_internal_error(capsys, monkeypatch, workspace, tmp_path, command, option, kind):
    if not (workspace["root"] / "evaluated" / "predictions.csv").exists():
        test_base_commands_work(capsys, monkeypatch, workspace, tmp_path / "base")
    value = str({"missing": tmp_path / "nowhere", "folder": workspace["root"] / "empty", "file": workspace["root"] / "notes.txt",
                 "unwritable": workspace["root"] / "notes.txt" / "below_a_file"}[kind])
    args = base_command(command, workspace, tmp_path)
    if option.startswith("--"):
        args = args[:args.index(option) + 1] + [value] + args[args.index(option) + 2:] if option in args else args + [option, value]
    else:
        args = [args[0], value] + args[2:]  # the positional argument
    code, err = run(capsys, monkeypatch, *args)
    assert code in (0, 1), (args, code, err)
    assert "internal error" not in err and "Traceback" not in err, err
