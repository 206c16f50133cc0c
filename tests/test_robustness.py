"""Hostile and broken input, crashes mid-write, and Ctrl-C: nothing lost, no traceback."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import dermcli.models.checkpoint as checkpoint_module
from dermcli.core.errors import DermcliError
from dermcli.inference.predict import predict
from dermcli.models.checkpoint import read_checkpoint, save_checkpoint
from dermcli.models.registry import get_backend
from tests.conftest import make_ham, run_cli
from tests.test_engine import checkpoint


def test_a_crash_mid_write_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    path = checkpoint(tmp_path / "best.pt")
    before = path.read_bytes()

    def dies_halfway(obj, f, *args, **kwargs):
        open(f, "wb").write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_module.torch, "save", dies_halfway)
    with pytest.raises(OSError):
        save_checkpoint(path, get_backend("cnn").build(7, {}), {"backend": "cnn"})
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["best.pt"]


def test_unwritable_out_is_a_one_line_error(tmp_path):
    (tmp_path / "a_file").write_text("x")
    result = run_cli("eval", "--weights", str(checkpoint(tmp_path / "m.pt")), "--data", str(tmp_path), "--out", str(tmp_path / "a_file" / "eval"))
    assert result.returncode == 1 and "cannot create output folder" in result.stderr and "Traceback" not in result.stderr


def test_weights_of_the_other_backend_are_refused(tmp_path):
    image = tmp_path / "x.png"
    Image.new("RGB", (30, 30)).save(image)
    with pytest.raises(DermcliError, match="a cnn checkpoint, not resnet50"):
        predict([str(image)], checkpoint(tmp_path / "m.pt"), model="resnet50")


def test_fuzzed_files_never_raise(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "fuzz"
    folder.mkdir()
    suffixes = [".jpg", ".png", ".bmp", ".tif"]
    for i in range(200):
        (folder / f"bytes_{i}{suffixes[i % 4]}").write_bytes(rng.bytes(int(rng.integers(0, 3000))))
    for i in range(100):
        size = tuple(int(v) for v in rng.integers(1, 60, 2))
        mode = ["RGB", "L", "RGBA", "P", "I;16", "CMYK"][i % 6]
        image = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).convert(mode if mode != "I;16" else "L")
        image = image if mode != "I;16" else Image.fromarray(rng.integers(0, 65535, (size[1], size[0]), dtype=np.uint16))
        fmt = {"CMYK": "JPEG", "I;16": "PNG", "P": "PNG", "RGBA": "PNG"}.get(mode, ["JPEG", "PNG", "BMP", "TIFF"][i % 4])
        data = bytearray(open(image.save(folder / f"img_{i}.{fmt.lower()}", fmt) or folder / f"img_{i}.{fmt.lower()}", "rb").read())
        if i % 3 == 0 and len(data) > 20:  # corrupt some bytes after the header
            for j in rng.integers(10, len(data), 5):
                data[j] = int(rng.integers(0, 256))
            (folder / f"img_{i}.{fmt.lower()}").write_bytes(bytes(data))
    results, problems = predict([str(folder)], checkpoint(tmp_path / "m.pt"))
    assert len(results) + len(problems) == 300 and len(results) >= 60
    assert all(0 <= p.malignant_score <= 1 + 1e-6 for p in results)
    cli = run_cli("predict", str(folder), "--weights", str(tmp_path / "m.pt"))
    assert cli.returncode == 1 and "Traceback" not in cli.stderr + cli.stdout


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
@pytest.mark.slow
def test_interrupted_training_keeps_last_epoch_and_resumes(tmp_path, sig):
    data = make_ham(tmp_path / "ham", lesions_per_class=6, images_per_lesion=2)
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "dermcli", "train", "--data", str(data), "--out", str(run), "--epochs", "100000", "--patience", "100000", "--batch-size", "8"]  # still running when the signal comes
    # A shell without job control starts background jobs with SIGINT ignored, and children inherit that
    # (CI may run us so): give the child the default handler, as a terminal's Ctrl-C would find it.
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 240
    while not (run / "last.pt").exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.2)
    time.sleep(0.5)
    process.send_signal(sig)
    try:
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    epoch = read_checkpoint(run / "last.pt")["training_state"]["epoch"]
    assert epoch >= 1 and "Traceback" not in stderr
    if sig == signal.SIGINT:
        assert process.returncode == 130 and f"--resume {run}" in stderr
    for leftover in run.glob(".*.tmp"):  # a kill -9 may strand a temporary file, never a half checkpoint
        leftover.unlink()
    torch.load(run / "last.pt", weights_only=True)


def _interrupt_after(calls: int, real, counted=lambda *args: True, on_interrupt=None):
    """`real`, except that its call number `calls` (of those `counted`) raises KeyboardInterrupt as a Ctrl-C
    landing there would (after `on_interrupt`'s work, if given)."""
    count = {"n": 0}

    def wrapped(*args, **kwargs):
        count["n"] += counted(*args)
        if count["n"] == calls and counted(*args):
            if on_interrupt:
                on_interrupt(*args, **kwargs)
            raise KeyboardInterrupt
        return real(*args, **kwargs)
    return wrapped


@pytest.mark.parametrize("where", ["in an epoch", "validating", "half-way through writing last.pt", "between epochs", "while calibrating"])
def test_ctrl_c_anywhere_exits_130_with_the_resume_hint_and_resumes(tmp_path, monkeypatch, capsys, where):
    """Deterministic: the interrupt is raised at a chosen point, not sent at a moment."""
    import dermcli.training.run as train_module
    from dermcli.__main__ import main

    data = make_ham(tmp_path / "ham", lesions_per_class=4)
    run = tmp_path / "run"
    points = {"in an epoch": (train_module, "train_one_epoch", 2), "validating": (train_module, "validation_metrics", 2),
              "half-way through writing last.pt": (checkpoint_module.torch, "save", 2),  # epoch 2's last.pt
              "between epochs": (train_module, "stage_number", 3), "while calibrating": (train_module, "calibrate", 1)}
    module, name, calls = points[where]
    real = getattr(module, name)
    if name == "save":
        def counted(payload, path, *rest):
            return Path(path).name.startswith(".last.pt.")

        def writes_half_then_stops(payload, path, *args, **kwargs):
            Path(path).write_bytes(b"half a checkpoint")
            raise KeyboardInterrupt
        monkeypatch.setattr(module, name, _interrupt_after(calls, real, counted, on_interrupt=writes_half_then_stops))
    else:
        monkeypatch.setattr(module, name, _interrupt_after(calls, real))
    monkeypatch.setattr(sys, "argv", ["dermcli", "train", "--data", str(data), "--out", str(run), "--epochs", "3", "--batch-size", "8"])
    with pytest.raises(SystemExit) as stop:
        main()
    err = capsys.readouterr().err
    assert stop.value.code == 130 and f"dermcli train --resume {run}" in err and "Traceback" not in err
    finished = read_checkpoint(run / "last.pt")["training_state"]["epoch"]
    assert finished == (3 if where == "while calibrating" else 1)
    assert not list(run.glob(".*.tmp"))
    monkeypatch.setattr(module, name, real)
    monkeypatch.setattr(sys, "argv", ["dermcli", "train", "--resume", str(run)])
    with pytest.raises(SystemExit) as stop:
        main()
    assert stop.value.code == 0
    assert read_checkpoint(run / "best.pt")["meta"]["temperature"] > 0 and read_checkpoint(run / "last.pt")["training_state"]["epoch"] == 3
