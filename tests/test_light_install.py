"""The light install (`pip install dermcli`, no torch): predict, eval and report on every shipped model run
through ONNX Runtime and the .onnx shipped beside each checkpoint; a command that needs torch says which extra
to install. The packages of the [train] and [timm] extras are made unimportable in the child process, as in a
venv without them, and the cache starts empty, so no earlier export can stand in for a shipped file."""

import json
import re
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from dermcli import PROJECT_ROOT
from dermcli.inference.predict import SHIPPED

EXTRAS = ("torch", "torchvision", "torchcam", "onnx", "timm")
WITHOUT_EXTRAS = f"""
import sys
class WithoutExtras:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {EXTRAS!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, WithoutExtras())
from dermcli.__main__ import main
sys.argv = ["dermcli", *sys.argv[1:]]
main()
"""


# as on a machine with an NVIDIA driver or an Apple-silicon Mac, where --device auto would look for a GPU through torch
ON_A_GPU_MACHINE = WITHOUT_EXTRAS.replace("from dermcli.__main__ import main",
                                          "import dermcli.runtime.devices\ndermcli.runtime.devices.could_have_gpu = lambda: True\nfrom dermcli.__main__ import main")


def light(*args: str, cache, script: str = WITHOUT_EXTRAS) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, cwd=PROJECT_ROOT,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(cache), "DERMCLI_CACHE_DIR": str(cache)}, timeout=600)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One empty cache for the module: each model's graph is optimised once, as on a user's machine."""
    return tmp_path_factory.mktemp("light_cache")


@pytest.fixture()
def labelled_examples(tmp_path):
    """The bundled examples as a class-folder data set (one image of each class)."""
    for row in pd.read_csv(PROJECT_ROOT / "examples" / "labels.csv").itertuples():
        (tmp_path / "set" / row.label).mkdir(parents=True)
        shutil.copy(PROJECT_ROOT / "examples" / f"{row.image_id}.jpg", tmp_path / "set" / row.label)
    return tmp_path / "set"


def test_the_blocker_stands_in_for_a_venv_without_the_extras(tmp_path):
    done = subprocess.run([sys.executable, "-c", WITHOUT_EXTRAS.split("from dermcli")[0] + "import torch"], capture_output=True, text=True)
    assert done.returncode == 1 and "No module named 'torch'" in done.stderr


@pytest.mark.parametrize("model", SHIPPED)
@pytest.mark.slow
def test_predict_eval_and_report_run_without_torch(model, labelled_examples, cache, tmp_path):
    done = light("predict", "examples/ISIC_0026531.jpg", "--model", model, "--json", cache=cache)
    assert done.returncode == 0, done.stderr
    got, shipped = json.loads(done.stdout), pd.read_csv(PROJECT_ROOT / "examples" / f"predictions_{model}.csv").set_index("image")
    expected = shipped.loc["examples/ISIC_0026531.jpg"]  # made by PyTorch (scripts/train_shipped.sh)
    assert got["label"] == expected["label"] and abs(got["malignant_score"] - expected["malignant_score"]) < 1e-3
    weights = str(SHIPPED[model].relative_to(PROJECT_ROOT))
    done = light("eval", "--weights", weights, "--data", str(labelled_examples), "--split", "all", "--out", str(tmp_path / "eval"),
                 cache=cache)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "eval" / "classification_report.txt").is_file()
    done = light("report", str(tmp_path / "eval"), "--card", cache=cache)
    assert done.returncode == 0, done.stderr
    assert "## Architecture" in (tmp_path / "eval" / "MODEL_CARD.md").read_text()


def test_a_gpu_machine_without_torch_predicts_on_the_cpu(cache):
    done = light("predict", "examples/ISIC_0026531.jpg", "--model", "cnn", "--json", cache=cache, script=ON_A_GPU_MACHINE)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["label"] == pd.read_csv(PROJECT_ROOT / "examples" / "predictions_cnn.csv").set_index("image").loc[
        "examples/ISIC_0026531.jpg", "label"]


def test_compare_cache_runs_and_models_run_without_torch(cache, tmp_path):
    evals = [str(SHIPPED[m].with_suffix("") / "eval") for m in ("cnn", "cnn-distilled")]
    done = light("compare", *evals, "--out", str(tmp_path / "compare"), cache=cache)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "compare").is_dir() and any((tmp_path / "compare").iterdir())
    for command in (["cache"], ["runs", "weights"]):
        done = light(*command, cache=cache)
        assert done.returncode == 0 and "Traceback" not in done.stderr, (command, done.stderr)
    done = light("models", cache=cache)
    assert done.returncode == 0, done.stderr
    assert all(name in done.stdout for name in SHIPPED) and 'pip install "dermcli[train]"' in done.stdout
    done = light("models", "zzz", cache=cache)
    assert done.returncode == 1 and "no model name contains 'zzz'" in done.stderr


@pytest.mark.parametrize("command", [["train", "--model", "cnn", "--data", "examples", "--out", "runs/never"],
                                     ["export", "weights/cnn_ham10000_7class.pt", "--out", "never.onnx"]])
def test_a_command_that_needs_torch_names_the_extra(command, cache):
    done = light(*command, cache=cache)
    assert done.returncode == 1
    [line] = done.stderr.strip().splitlines()
    assert re.fullmatch(r'error: this needs (torch|onnx), which dermcli\'s light install leaves out: pip install "dermcli\[train\]"', line), line
    assert not (PROJECT_ROOT / "runs" / "never").exists() and not (PROJECT_ROOT / "never.onnx").exists()
