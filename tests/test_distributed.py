"""torchrun + DistributedDataParallel on the CPU (gloo), 2 processes, on real HAM10000 images."""

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from dermcli.core.errors import DermcliError
from dermcli.data.batches import FeatureBatches, ImageBatches
from dermcli.data.dataset import load_dataset
from dermcli.data.split import make_split, save_split
from dermcli.models.checkpoint import read_checkpoint
from dermcli.runtime.distributed import World, interleave
from dermcli.training.config import TrainConfig
from dermcli.training.job import RUN_FILES
from dermcli.training.run import train

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "dermcli"]
# A trainable part without BatchNorm (a linear head on cached features): 2 processes x B rows then compute
# what 1 process computes on the same 2B rows, up to float rounding.
HEAD_ONLY = ["--model", "resnet18", "--no-pretrained", "--input-size", "32", "--freeze", "backbone", "--class-weights", "balanced",
             "--lr", "0.01", "--epochs", "2", "--scheduler", "cosine"]


def dermcli(*args, processes=1, cwd=None):
    command = TORCHRUN if processes == 2 else [sys.executable, "-m", "dermcli"]
    return subprocess.run(command + [str(a) for a in args], capture_output=True, text=True, cwd=cwd, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_each_process_gets_its_rows_of_the_draws_one_process_makes():
    images = np.random.default_rng(0).integers(0, 256, (20, 8, 8, 3), dtype=np.uint8)
    features = FeatureBatches([torch.randn(20, 4), torch.randn(20, 4)])
    idx = np.random.default_rng(1).permutation(20)[:11]
    for batches in (ImageBatches(images, "unit", "dihedral"), features):
        whole = batches.get(idx, np.random.default_rng(5))
        shares, states = [], set()
        for rank in range(2):
            rng = np.random.default_rng(5)
            shares.append(batches.get(idx, rng, World(rank, rank, 2).part(len(idx))).numpy())
            states.add(str(rng.bit_generator.state))
        assert np.array_equal(interleave(shares, len(idx)), whole.numpy())
        assert len(states) == 1  # every process's generator stays in step


def test_sync_bn_needs_cuda(tmp_path, ham_dir):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(DermcliError, match="--sync-bn needs CUDA"):
        train(TrainConfig(data=str(ham_dir), out=str(tmp_path / "run"), epochs=1, sync_bn=True))


@pytest.mark.slow
def test_two_processes_train_what_one_process_trains_with_the_same_global_batch(real_subset, tmp_path):
    # An odd number of training images, so the last global batch's shares differ in size (7 and 6 rows)
    split = make_split(load_dataset(real_subset))
    train = split[split["split"] == "train"]
    single = train["lesion_id"].value_counts().pipe(lambda n: n[n == 1].index[0])  # a lesion of one image moves to test
    split.loc[split["lesion_id"] == single, "split"] = "test"
    save_split(split, tmp_path / "split.csv")
    train_rows = (split["split"] == "train").sum()
    batch = next(b for b in range(6, 30) if (train_rows % (2 * b)) % 2 == 1 and train_rows % (2 * b) >= 5)
    one, two = tmp_path / "one", tmp_path / "two"
    for out, processes, size in ((one, 1, 2 * batch), (two, 2, batch)):
        result = dermcli("train", "--data", real_subset, "--out", out, "--batch-size", size, "--split-file", tmp_path / "split.csv",
                         *HEAD_ONLY, processes=processes)
        assert result.returncode == 0, result.stderr[-2000:]
    assert f"2 processes, global batch 2 x {batch}" in result.stderr
    assert result.stdout.count("best checkpoint:") == 1  # rank 0 speaks for the job
    assert sorted(p.name for p in two.iterdir() if p.name != "tb") == sorted(RUN_FILES)  # one set of run files (and TensorBoard's)
    h1, h2 = (pd.read_csv(run / "history.csv").drop(columns="seconds") for run in (one, two))
    assert len(h1) == 2 and np.allclose(h1.to_numpy(), h2.to_numpy(), rtol=0, atol=1e-5)
    a, b = read_checkpoint(one / "best.pt"), read_checkpoint(two / "best.pt")
    for key, value in a["state_dict"].items():
        assert torch.allclose(value, b["state_dict"][key], atol=1e-5), key
    assert abs(a["meta"]["temperature"] - b["meta"]["temperature"]) < 1e-4
    assert abs(a["meta"]["threshold"] - b["meta"]["threshold"]) < 1e-4
    assert read_checkpoint(one / "last.pt")["training_state"]["processes"] == 1
    assert read_checkpoint(two / "last.pt")["training_state"]["processes"] == 2


@pytest.mark.slow
def test_two_process_cnn_resumes_only_with_two_processes_and_evaluates_as_one(real_subset, tmp_path):
    run = tmp_path / "cnn"
    first = dermcli("train", "--data", real_subset, "--out", run, "--epochs", "1", "--batch-size", "16", processes=2)
    assert first.returncode == 0, first.stderr[-2000:]
    refused = dermcli("train", "--resume", run, "--epochs", "2")
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines()[-1].endswith(
        "was trained by 2 processes, this job has 1: resume with the same number (torchrun --nproc-per-node), so the global batch stays the same")
    resumed = dermcli("train", "--resume", run, "--epochs", "2", processes=2)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert pd.read_csv(run / "history.csv")["epoch"].tolist() == [1, 2]

    for processes in (1, 2):
        result = dermcli("eval", "--weights", run / "best.pt", "--data", real_subset, "--split", "all", "--allow-overlap", "--out",
                         tmp_path / f"eval_{processes}", processes=processes)
        assert result.returncode == 0, result.stderr[-2000:]
    for part in ("predictions.csv", "overlap/predictions.csv"):  # the test split, and the model's own images apart
        one, two = ((tmp_path / f"eval_{n}" / part).read_text() for n in (1, 2))
        assert one == two
    rows = sum(len(pd.read_csv(tmp_path / "eval_1" / part)) for part in ("predictions.csv", "overlap/predictions.csv"))
    assert rows == len(pd.read_csv(real_subset / "HAM10000_metadata.csv"))


LEAVING = """
import atexit, os, sys
import torch.distributed as dist
from dermcli.cli.console import run_guarded
from dermcli.core.errors import DermcliError
dist.init_process_group("gloo", init_method="file://" + sys.argv[1], rank=0, world_size=1)
atexit.register(lambda: print("the interpreter's exit ran", file=sys.stderr))
def command():
    print("done", end="")  # no newline, to a pipe: still in the buffer at the end
    if sys.argv[2] == "fails":
        raise DermcliError("it failed")
    if sys.argv[2] == "breaks":
        raise ValueError("a bug")
    if sys.argv[2] == "loses its reader":
        os.close(1)  # as a closed pipe: the last flush fails
    return 3
run_guarded(command)
"""


@pytest.mark.parametrize("outcome, debug, code, out, err", [
    ("returns", "", 3, "done", ""), ("fails", "", 1, "done", "error: it failed"),
    ("breaks", "", 2, "done", "internal error: ValueError: a bug (set DERMCLI_DEBUG=1 for the traceback)"),
    ("breaks", "1", 2, "done", "ValueError: a bug"), ("loses its reader", "", 3, "", ""),
])
def test_a_process_of_a_job_leaves_it_with_its_status_and_output_but_not_through_the_interpreters_exit(tmp_path, outcome, debug, code, out, err):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONUNBUFFERED", "DERMCLI_DEBUG")} | {"DERMCLI_DEBUG": debug}
    ended = subprocess.run([sys.executable, "-c", LEAVING, str(tmp_path / "init"), outcome], capture_output=True, text=True,
                           timeout=120, env=env)
    assert (ended.returncode, ended.stdout) == (code, out)
    assert ended.stderr.strip().splitlines()[-1:] == ([err] if err else [])  # a traceback before the last line under DERMCLI_DEBUG
    assert "Traceback" in ended.stderr if debug else "Traceback" not in ended.stderr


def test_cross_validation_is_refused_under_torchrun(monkeypatch, tmp_path, ham_dir):
    from dermcli.training.crossval import train_folds

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(DermcliError, match="--folds under torchrun is not supported"):
        train_folds(TrainConfig(data=str(ham_dir), out=str(tmp_path / "cv")), 3)
    assert not (tmp_path / "cv").exists()


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs")
def test_two_gpus_train_with_nccl_and_sync_bn(real_subset, tmp_path):
    result = dermcli("train", "--data", real_subset, "--out", tmp_path / "run", "--epochs", "2", "--batch-size", "16",
                     "--device", "cuda", "--sync-bn", processes=2)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "training on cuda:0 with bf16 autocast, 2 processes" in result.stderr
    assert sorted(p.name for p in (tmp_path / "run").iterdir() if p.name != "tb") == sorted(RUN_FILES)
