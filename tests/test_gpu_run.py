"""scripts/gpu_payload.sh and scripts/gpu_run.sh (docs/performance.md, "A GPU run") on this CPU: the payload's size
report and refusal on a tiny generated source, gpu_run.sh's usage errors, time budget and tests stage, and its
--dry-run of the other stages end to end on generated data, down to what comes back from the GPU machine."""

import json
import os
import re
import subprocess
import tarfile
from pathlib import Path

import pytest
import torch

from tests.conftest import REAL_DATA, REPO, make_ham

LITE0 = "tf_efficientnet_lite0_imagenet_timm.pt"


def script(name: str, *args, **env) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(REPO / "scripts" / name), *map(str, args)], check=False, capture_output=True, text=True,
                          timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1", **{k: str(v) for k, v in env.items()}})


@pytest.fixture(scope="module")
def payload(tmp_path_factory) -> Path:
    """gpu_payload.sh's payload of a generated HAM10000 (42 images) and the Lite0 init weights (a stand-in of one
    tensor where ../shared/weights lacks them: --init takes a partial state dict)."""
    root = tmp_path_factory.mktemp("gpu_payload")
    data = make_ham(root / "ham")
    weights = root / "weights"
    weights.mkdir()
    real = REAL_DATA.parent.parent / "weights" / LITE0
    if real.is_file():
        (weights / LITE0).symlink_to(real)
    else:
        torch.save({"conv_stem.weight": torch.randn(32, 3, 3, 3)}, weights / LITE0)
    made = script("gpu_payload.sh", data, WEIGHTS_DIR=weights, PAYLOAD=root / "payload")
    assert made.returncode == 0, made.stderr
    return root / "payload"


def test_the_payload_reports_its_size_and_refuses_what_would_not_travel(payload, tmp_path):
    exclude = REPO / ".git" / "info" / "exclude"
    report = (payload / "PAYLOAD.txt").read_text().splitlines()[0]
    size, tree = (float(x) for x in re.fullmatch(
        rf"gpu_payload: .*payload/ ([\d.]+) MiB \(42 images, {LITE0}\) \+ tree ([\d.]+) MiB = [\d.]+ of 64 MiB", report).groups())
    on_disk = sum(p.stat().st_size for p in payload.rglob("*") if p.is_file())
    assert abs(size - on_disk / 2**20) < 0.1 and 0 < tree < 10
    assert len(list((payload / "ham10000").rglob("*.jpg"))) == 42 and (payload / LITE0).is_file()
    assert not (payload / "split.csv").exists()  # the shipped split is of other images

    refused = script("gpu_payload.sh", payload / "ham10000", WEIGHTS_DIR=payload, PAYLOAD=tmp_path / "p", LIMIT_MIB=1)
    assert refused.returncode == 1 and not (tmp_path / "p").exists()
    assert re.fullmatch(r"gpu_payload: [\d.]+ MiB payload \+ [\d.]+ MiB tree > the 1 MiB limit: refused\n", refused.stderr)
    missing = script("gpu_payload.sh", tmp_path / "nothing", PAYLOAD=tmp_path / "p")
    assert missing.returncode == 1 and len(missing.stderr.splitlines()) == 1 and "no HAM10000_metadata.csv" in missing.stderr
    assert str(payload.parent) not in (exclude.read_text() if exclude.is_file() else "")  # one outside the repo is not excluded in it


def test_gpu_run_refuses_bad_usage_in_one_line(payload, tmp_path):
    for args, env, says in ((["bench", "fast"], {}, "unknown stage or option 'fast'"), (["--out"], {}, "--out needs a folder"),
                            (["--dry-run"], {"PAYLOAD": tmp_path / "none"}, "no HAM10000"),
                            (["--dry-run"], {"BUDGET_S": "ten"}, "BUDGET_S=ten is not a number")):
        result = script("gpu_run.sh", *args, **{"PAYLOAD": payload, "WORK": tmp_path / "w", "OUT": tmp_path / "o", **env})
        assert result.returncode == 2 and says in result.stderr and len(result.stderr.splitlines()) == 1, result.stderr


@pytest.mark.slow
def test_the_tests_stage_runs_and_stages_that_do_not_fit_the_time_left_are_skipped(payload, tmp_path):
    # 120 s: room for the tests stage (60 s + 30 for collecting), never for train's 120 + 30
    result = script("gpu_run.sh", "--dry-run", "tests", "train", PAYLOAD=payload, WORK=tmp_path / "w", OUT=tmp_path / "o", BUDGET_S=120)
    assert result.returncode == 3, result.stdout + result.stderr
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert [(s["stage"], s["status"]) for s in summary["stages"]] == [("tests", "ok"), ("train", "skipped")]
    assert "run `scripts/gpu_run.sh train` next" in (tmp_path / "o" / "gpu_run.log").read_text()
    with tarfile.open(tmp_path / "o" / "results.tar") as tar:
        assert "testsuite" in tar.extractfile("./tests/junit.xml").read().decode()


@pytest.mark.slow
def test_the_dry_run_runs_every_stage_and_brings_back_what_the_gpu_run_would(payload, tmp_path):
    out = tmp_path / "out"
    result = script("gpu_run.sh", "--dry-run", "bench", "train", "ensemble", PAYLOAD=payload, WORK=tmp_path / "work", OUT=out)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    # what the device tool brings back: at most 8 files of 16 MiB, 64 MiB in all, plain names
    files = sorted(p for p in out.rglob("*") if p.is_file())
    assert 3 <= len(files) <= 8 and sum(p.stat().st_size for p in files) <= 64 * 2**20
    assert all(p.parent == out and p.stat().st_size <= 16 * 2**20 and re.fullmatch(r"[A-Za-z0-9._-]+", p.name) for p in files)
    summary = json.loads((out / "summary.json").read_text())
    assert [(s["stage"], s["status"]) for s in summary["stages"]] == [(s, "ok") for s in ("bench", "train", "ensemble")]
    assert summary["bench"]["resnet50_bf16_real_img_per_s"] > 0 and "bars_met" not in summary["bench"]  # no bars for a CPU

    parts = sorted(out.glob("results.tar*"))
    (tmp_path / "results.tar").write_bytes(b"".join(p.read_bytes() for p in parts))
    with tarfile.open(tmp_path / "results.tar") as tar:
        tar.extractall(tmp_path / "results", filter="data")
    results = tmp_path / "results"
    assert sorted(str(p.relative_to(results)) for p in results.rglob("*") if p.is_file()) == sorted(summary["results_tar"])

    bench = json.loads((results / "bench" / "train_throughput.json").read_text())
    assert {(r["model"], r["amp"], r["feed"]) for r in bench["rows"]} == {("resnet50", "bf16", "real"), ("resnet50", "bf16", "synthetic")}
    assert all(r["img_per_s"] > 0 and r["batch_size"] == 2 for r in bench["rows"])
    assert bench["pipeline"][0]["real_over_synthetic"] > 0
    for seed in (42, 7):
        config = json.loads((results / f"lite0_s{seed}" / "config.json").read_text())
        assert {k: config[k] for k in ("seed", "epochs", "ema", "crop_scale", "lr_warmup", "amp", "scheduler")} == {
            "seed": seed, "epochs": 2, "ema": 0.998, "crop_scale": 0.5, "lr_warmup": 1, "amp": "none", "scheduler": "cosine"}
        assert len((results / f"lite0_s{seed}" / "history.csv").read_text().splitlines()) == 3  # header + 2 epochs
    ensemble = torch.load(results / "lite0_ensemble.pt", map_location="cpu", weights_only=True)
    assert ensemble["meta"]["backend"] == "ensemble" and len(ensemble["meta"]["model_options"]["members"]) == 2
    assert ensemble["meta"]["tta"] == "dihedral"
    val = results / "lite0_ensemble" / "val"
    assert "macro_f1" in json.dumps(json.loads((val / "metrics.json").read_text()))
    assert all((val / f).stat().st_size > 1000 for f in ("confusion_matrix.png", "roc_pr.png", "reliability.png"))
