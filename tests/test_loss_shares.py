"""One process and two agree on the loss for every class weighting, both tasks and distillation: each process's
share of a global batch adds up to the one-process loss, and two real gloo processes step to the same weights."""

import itertools

import numpy as np
import pytest
import torch

from dermcli.data.batches import ImageBatches
from dermcli.runtime.distributed import World, leave
from dermcli.training.config import TrainConfig
from dermcli.training.distill import DistillationLoss, ViewRecordingBatches, geometric_views
from dermcli.training.loop import train_one_epoch
from dermcli.training.objectives import loss_function

COMBINATIONS = [(task, weights, teacher) for task, weights, teacher in
                itertools.product(("multiclass", "binary"), ("none", "sqrt", "balanced"), (False, True))
                if not (teacher and task == "binary")]  # a teacher teaches 7-class students only
N, SIZE = 25, 4  # 25 rows: global batches of 2 x 5 end with 5 rows, split 3 / 2 between the processes


def problem(task: str, weights: str, teacher: bool):
    """Labels skewed enough that class weights matter, tiny images, their batches and the loss."""
    rng = np.random.default_rng(0)
    k = 2 if task == "binary" else 7
    y = rng.choice(k, N, p=[0.6, 0.4] if k == 2 else [0.4, 0.2, 0.1, 0.1, 0.1, 0.05, 0.05])
    images = rng.integers(0, 256, (N, SIZE, SIZE, 3), dtype=np.uint8)
    cfg = TrainConfig(data="", out="", task=task, class_weights=weights, label_smoothing=0.1)
    loss = loss_function(cfg, y)
    labels = torch.from_numpy(y)
    if not teacher:
        return ImageBatches(images, "unit", "dihedral"), labels, loss
    batches = ViewRecordingBatches(images, "unit", "dihedral", views=geometric_views("dihedral"))
    logits = rng.normal(size=(N, len(batches.views), k)).astype(np.float32)
    return batches, torch.arange(N), DistillationLoss(loss, labels, logits, batches, 0.5, 2.0)


def tiny_model(task: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * SIZE * SIZE, 1 if task == "binary" else 7))


@pytest.mark.parametrize("task,weights,teacher", COMBINATIONS)
def test_the_processes_shares_of_a_batch_add_up_to_its_one_process_loss(task, weights, teacher):
    batches, y, loss = problem(task, weights, teacher)
    model = tiny_model(task)
    idx = np.random.default_rng(1).permutation(N)[:11]
    whole = loss(model(batches.get(idx, np.random.default_rng(2))), y[idx], y[idx])
    shares, own = [], []  # own: a mean over each process's own rows, weighted by its share of the rows
    for rank in range(2):
        part = World(rank, rank, 2).part(len(idx))
        logits = model(batches.get(idx, np.random.default_rng(2), part))  # a distilling loss reads the views of this get
        shares.append(loss(logits, y[idx[part]], y[idx]))
        own.append(loss(logits, y[idx[part]], y[idx[part]]) * len(part) / len(idx))
    assert torch.allclose(sum(shares), whole, atol=1e-6), (float(sum(shares)), float(whole))
    if weights != "none" and task == "multiclass":  # the test can fail: the old way did not add up
        assert not torch.allclose(sum(own), whole, atol=1e-4)


def _epoch(rank: int, processes: int, init_file: str, results: dict) -> None:
    """One epoch of every combination as process `rank` of `processes`, through DistributedDataParallel."""
    world = World(rank, rank, processes, processes)
    if processes > 1:
        torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=processes)
    for combination in COMBINATIONS:
        batches, y, loss = problem(*combination)
        model = tiny_model(combination[0])
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
        epoch_loss = train_one_epoch(world.wrap(model), batches, y, loss, optimizer, np.random.default_rng(3), 10 // processes, world=world)
        results[combination] = (epoch_loss, [p.detach().clone() for p in model.parameters()])


def _rank(rank: int, init_file: str, queue) -> None:
    results = {}
    _epoch(rank, 2, init_file, results)
    if rank == 0:
        queue.put({k: (v[0], [p.numpy() for p in v[1]]) for k, v in results.items()})  # written to the pipe on return
    leave(0)  # as dermcli's processes end a job: the interpreter's own exit is where gloo aborted them


@pytest.mark.slow
def test_two_gloo_processes_step_to_the_weights_one_process_reaches(tmp_path):
    single = {}
    _epoch(0, 1, "", single)
    context = torch.multiprocessing.get_context("spawn")
    queue = context.SimpleQueue()
    torch.multiprocessing.start_processes(_rank, args=(str(tmp_path / "init"), queue), nprocs=2, start_method="spawn")
    double = queue.get()
    for combination in COMBINATIONS:
        loss_one, params_one = single[combination]
        loss_two, params_two = double[combination]
        assert abs(loss_one - loss_two) < 1e-5, combination
        for a, b in zip(params_one, params_two):
            assert np.allclose(a.numpy(), b, atol=1e-5), combination
