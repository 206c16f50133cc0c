"""What a new user meets first: -h and --version, a closed pipe, a folder named with a trailing slash, and a model
name that matches nothing."""

import subprocess
import sys

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
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr


def test_out_with_a_trailing_slash_names_a_folder_and_is_refused(tmp_path):
    result = run_cli("predict", EXAMPLE, "--model", "cnn", "--out", f"{tmp_path / 'newdir'}/")
    assert result.returncode == 1 and "is a folder; give a file name, e.g." in result.stderr
    assert not (tmp_path / "newdir").exists()


def test_a_model_name_matching_nothing_is_an_error_with_the_closest_names():
    result = run_cli("models", "resnet5O")
    assert result.returncode == 1 and "no model name contains 'resnet5O'; closest: " in result.stderr
    assert result.stderr.count("\n") == 1
