"""What a new user meets first: -h and --version, a closed pipe, a folder named with a trailing slash, and a model
name that matches nothing."""

import subprocess
import sys

import pytest

from dermcli import __version__
from tests.conftest import REPO, run_cli

EXAMPLE = str(REPO / "examples" / "ISIC_0026531.jpg")


def test_short_help_and_version():
    assert run_cli("--version").stdout.strip() == f"dermcli {__version__}"
    for args in (("-h",), ("predict", "-h"), ("train", "-h")):
        result = run_cli(*args)
        assert result.returncode == 0 and "Usage:" in result.stdout, args


def test_a_closed_pipe_ends_quietly():
    # `true` exits without reading, long before dermcli writes: its first write meets a closed pipe, every time
    command = f"{sys.executable} -m dermcli predict '{REPO / 'examples'}/*.jpg' --model cnn --json | true"
    result = subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True, timeout=300)
    said = [line for line in result.stderr.splitlines() if not line.startswith("preparing the ONNX model")]  # a first run says so
    assert result.returncode == 0 and said == [], result.stderr


def test_out_with_a_trailing_slash_names_a_folder_and_is_refused(tmp_path):
    result = run_cli("predict", EXAMPLE, "--model", "cnn", "--out", f"{tmp_path / 'newdir'}/")
    assert result.returncode == 1 and "is a folder; give a file name, e.g." in result.stderr
    assert not (tmp_path / "newdir").exists()


@pytest.mark.slow
def test_a_model_name_matching_nothing_is_an_error_with_the_closest_names():
    result = run_cli("models", "resnet5O")
    assert result.returncode == 1 and "no model name contains 'resnet5O'; closest: " in result.stderr
    assert result.stderr.count("\n") == 1


def test_progress_without_a_terminal_is_a_line_every_tenth_and_every_30_seconds():
    from dermcli.cli.console import plain_progress

    lines, ticks = [], iter(range(0, 10_000, 5))  # five clock seconds per item: silent for the first 30 s
    assert list(plain_progress(range(20), "decoding", 20, clock=lambda: next(ticks), out=lines.append)) == list(range(20))
    assert [line.split(" (")[0] for line in lines] == [f"decoding: {n}/20" for n in range(6, 21, 2)] and "s left" in lines[0]
    lines.clear()
    quick = iter(range(0, 10_000, 1))
    list(plain_progress(range(20), "decoding", 20, clock=lambda: next(quick), out=lines.append))
    assert lines == []  # 20 s in all: no line
    lines.clear()
    slow = iter(range(0, 10_000, 31))  # 31 s an item, no total: a line each time 30 s have passed
    list(plain_progress(range(3), "training", None, clock=lambda: next(slow), out=lines.append))
    assert [line.split(" (")[0] for line in lines] == ["training: 1/?", "training: 2/?", "training: 3/?"]


def raises(error):
    def command():
        raise error
    return command


@pytest.mark.parametrize("error, status, says", [
    (ModuleNotFoundError("No module named 'timm'", name="timm"), 1, 'error: this needs timm, which dermcli\'s light install leaves out: pip install "dermcli[timm]"'),
    (ModuleNotFoundError("No module named 'fastapi'", name="fastapi"), 1, 'pip install "dermcli[serve]"'),
    (ModuleNotFoundError("No module named 'torch._C'", name="torch._C"), 2, "internal error: ModuleNotFoundError: No module named 'torch._C'"),
    (ModuleNotFoundError("No module named 'nowhere'", name="nowhere"), 2, "internal error: ModuleNotFoundError"),
])
def test_a_missing_extra_names_it_and_a_broken_install_is_no_missing_extra(error, status, says, capsys):
    from dermcli.cli.console import run_guarded

    with pytest.raises(SystemExit) as done:
        run_guarded(raises(error))
    [line] = capsys.readouterr().err.strip().splitlines()
    assert done.value.code == status and says in line, line
