"""Data-parallel training the way torchrun does it.

A process learns its place from the environment torchrun (or ``launch`` below) sets: ``RANK``,
``LOCAL_RANK``, ``WORLD_SIZE``. Without them it is a single process and nothing here does
anything. Backend: NCCL on CUDA, gloo on CPU. Rank 0 logs and writes checkpoints.

Several nodes: run the same command on every node, for example

    torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint host0:29500 \\
        -m animvfi_pipeline.training.entry flow --store data/02_intermediate/triplets.h5 \\
        --params conf/atd12k/parameters_flow_pretraining.yml --out data/06_models/flownet.pt
"""
from __future__ import annotations

import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler, Sampler

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistContext:
    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(device: str = "auto", local_rank: int = 0) -> torch.device:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' was asked for but torch sees no CUDA device")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device(device)


def setup(device: str = "auto") -> DistContext:
    """Join the process group described by the environment (idempotent); single process otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, device_id=dev if dev.type == "cuda" else None)
        log.info("rank %d/%d joined the %s process group on %s", rank, world_size, backend, dev)
    return DistContext(rank=rank, local_rank=local_rank, world_size=world_size, device=dev)


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def train_sampler(dataset: Any, ctx: DistContext, seed: int) -> DistributedSampler:
    """Shuffled, disjoint per-rank shards; call ``set_epoch`` each epoch for a new order.

    Used with one process too: its order depends only on ``(seed, epoch)``, which is what makes a
    resumed run see the same batches as an uninterrupted one.
    """
    return DistributedSampler(dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=seed)


class ShardSampler(Sampler[int]):
    """Rank ``r`` of ``n`` gets items ``r, r + n, r + 2n, ...``: every item exactly once overall.

    For validation: DistributedSampler pads with repeated items to even out the shards, which
    would count those items twice in all-reduced sums.
    """

    def __init__(self, length: int, rank: int = 0, world_size: int = 1):
        self.items = list(range(rank, length, world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


def wrap(model: torch.nn.Module, ctx: DistContext, find_unused_parameters: bool = False) -> torch.nn.Module:
    if not ctx.is_distributed:
        return model
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(
        model, device_ids=device_ids, find_unused_parameters=find_unused_parameters
    )


def all_reduce_sum(values: dict[str, torch.Tensor], ctx: DistContext) -> dict[str, torch.Tensor]:
    """Sum each value over ranks (float64, so sums of per-sample metrics stay exact enough)."""
    if not values:
        return {}
    keys = sorted(values)
    flat = torch.stack([values[k].detach().to(ctx.device, torch.float64).reshape(()) for k in keys])
    if ctx.is_distributed:
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    return dict(zip(keys, flat.cpu()))


def all_true(flag: bool, ctx: DistContext) -> bool:
    """True only if ``flag`` is true on every rank (so all ranks take the same branch)."""
    if not ctx.is_distributed:
        return flag
    t = torch.tensor([1 if flag else 0], device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def barrier(ctx: DistContext) -> None:
    if ctx.is_distributed:
        dist.barrier()


def launch(fn: Callable[..., Any], nproc: int | str, *args: Any) -> Any:
    """Run ``fn(*args)`` on ``nproc`` local processes and return rank 0's result.

    ``nproc="auto"``: one process per visible GPU (one on CPU). One process runs inline. Under
    torchrun already (``WORLD_SIZE`` set) this process is one rank: ``fn`` runs inline and its own
    result is returned. Otherwise torch's elastic launcher (what torchrun uses) starts the workers
    with a c10d rendezvous on localhost; ``fn`` and ``args`` must be picklable.
    """
    n = _nproc(nproc)
    if "WORLD_SIZE" in os.environ or n == 1:
        return fn(*args)

    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    from animvfi_pipeline.training.tracking import run_env

    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=n,
        run_id=f"animvfi-{uuid.uuid4().hex[:8]}",
        rdzv_backend="c10d",
        rdzv_endpoint=f"localhost:{_free_port()}",
        max_restarts=0,
        monitor_interval=0.5,
        start_method="spawn",
    )
    env = run_env()  # so that workers log into this process's MLflow run
    if not torch.cuda.is_available() and "OMP_NUM_THREADS" not in os.environ:
        # n CPU workers each spawning one thread per core would fight over the same cores.
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // n))
    log.info("launching %d worker processes", n)
    with _environ(env):
        results = elastic_launch(config, fn)(*args)
    return results[0]


def _nproc(nproc: int | str) -> int:
    if nproc == "auto":
        return max(1, torch.cuda.device_count())
    n = int(nproc)
    if n < 1:
        raise ValueError(f"nproc must be >= 1 or 'auto', not {nproc!r}")
    return n


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
