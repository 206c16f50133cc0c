"""torchrun support in one place: the process's rank in the job, the process group, and the few collective
steps training and evaluation need (main process first, sharded work gathered back in order, sums).

Outside torchrun (no WORLD_SIZE, or 1) everything here is a no-op for a single process, so the training
loop has no second branch: `World()` is one process of one.
"""

import atexit
import gc
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import numpy as np

from dermcli.core.errors import DermcliError


@dataclass(frozen=True)
class World:
    rank: int = 0
    local_rank: int = 0
    size: int = 1
    local_size: int = 1  # processes on this machine

    @property
    def main(self) -> bool:
        """Rank 0: the one process that writes files, logs and draws progress bars."""
        return self.rank == 0

    def quiet(self, track, log):
        """`track` and `log` for rank 0, which speaks for the job; no bars and no messages elsewhere."""
        return (track, log) if self.main else (None, lambda msg: None)

    def part(self, n: int) -> np.ndarray | None:
        """This process's rows of a batch of n: every size-th, from its rank (None for a single process)."""
        return None if self.size == 1 else np.arange(self.rank, n, self.size)

    def barrier(self) -> None:
        if self.size > 1:
            import torch.distributed as dist

            dist.barrier()

    @contextmanager
    def main_first(self):
        """Rank 0 does the work inside (make a split, decode a cache, compute features) while the others
        wait; then they do it too, finding rank 0's files: no duplicated work, no two writers of one file."""
        if not self.main:
            self.barrier()
        yield
        if self.main:
            self.barrier()

    def sharded(self, compute, n: int) -> tuple:
        """`compute(rows)` -> a tuple of arrays (or Nones) with one row per given row, run on this process's
        share of range(n) (a slice: it views an array without copying) and gathered back in row order on
        every process."""
        rows = slice(self.rank, n, self.size)
        if self.size == 1:
            return compute(rows)
        import torch.distributed as dist

        parts = [None] * self.size
        dist.all_gather_object(parts, compute(rows))
        return tuple(None if columns[0] is None else interleave(list(columns), n) for columns in zip(*parts))

    def sum(self, *values: float) -> list[float]:
        """The sums of `values` over all processes."""
        if self.size == 1:
            return list(values)
        import torch
        import torch.distributed as dist

        total = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(total)
        return total.tolist()

    def wrap(self, trainable, sync_bn: bool = False):
        """The module that trains: under torchrun, DistributedDataParallel over it (gradients averaged over
        processes), with SyncBatchNorm first when asked; the module itself for a single process."""
        if self.size == 1:
            return trainable
        import torch
        from torch.nn.parallel import DistributedDataParallel

        device = next(trainable.parameters()).device
        if sync_bn:
            trainable = torch.nn.SyncBatchNorm.convert_sync_batchnorm(trainable)
        return DistributedDataParallel(trainable, device_ids=[device] if device.type == "cuda" else None)


def interleave(parts: list[np.ndarray], n: int) -> np.ndarray:
    """Undo World.part's sharding: part r holds rows r, r + len(parts), …"""
    out = np.empty((n, *parts[0].shape[1:]), dtype=parts[0].dtype)
    for rank, part in enumerate(parts):
        out[rank::len(parts)] = part
    return out


def environment() -> World:
    """This process's place in a torchrun job, from the variables torchrun sets (one process of one outside it)."""
    try:
        return World(*(int(os.environ.get(name, default)) for name, default in
                       (("RANK", 0), ("LOCAL_RANK", 0), ("WORLD_SIZE", 1), ("LOCAL_WORLD_SIZE", 1))))
    except ValueError:
        raise DermcliError("RANK, LOCAL_RANK, WORLD_SIZE and LOCAL_WORLD_SIZE must be integers (torchrun sets them)") from None


def start(device) -> World:
    """Join torchrun's job (once per process): NCCL for CUDA, gloo on the CPU. `device` is a resolved device
    (devices.resolve_device gives each process its own GPU under torchrun)."""
    world = environment()
    if world.size == 1:
        return world
    import torch
    import torch.distributed as dist

    kind = torch.device(device).type
    if kind not in ("cuda", "cpu"):
        raise DermcliError(f"torchrun runs on CUDA GPUs or the CPU, not {kind}: use --device cuda or cpu")
    if dist.is_initialized():
        return world
    if kind == "cuda":
        torch.cuda.set_device(torch.device(device))
    # An hour, not the 10-30 minute default: rank 0 may decode images and compute frozen features that long
    # on a CPU while the others wait for its cache at a barrier.
    dist.init_process_group("nccl" if kind == "cuda" else "gloo", timeout=timedelta(hours=1),
                            **({"device_id": torch.device(device)} if kind == "cuda" else {}))
    # For library callers of train() or evaluate(); the CLI leaves the job before this can run (see `leave`).
    atexit.register(lambda: dist.is_initialized() and dist.destroy_process_group())
    return world


def leave(status: int) -> None:
    """End a process that joined a job with `status`: leave the process group and skip the interpreter's own
    exit, where gloo's threads aborted a finished process (SIGABRT, "terminate called without an active
    exception"), which made torchrun fail the job and stop its other processes. Every file is written and
    closed by then; only stdio needs flushing."""
    import torch.distributed as dist

    try:
        if status == 0:  # a failed process may have peers inside a collective, where NCCL's teardown can wait on them
            gc.collect()  # the DDP wrappers, kept by reference cycles, before their process group
            dist.destroy_process_group()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # the reader has gone (a closed pipe), or the stream is closed
                pass
    finally:  # whatever raised above, or a second Ctrl-C: never the interpreter's exit
        os._exit(status)
