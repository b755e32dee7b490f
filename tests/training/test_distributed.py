"""DDP on two CPU processes (gloo), started by the same elastic launcher torchrun uses."""
from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset

from animvfi_pipeline.training import distributed
from animvfi_pipeline.training.loop import TrainConfig, train

N_TRAIN, N_VAL = 20, 7  # 7: the validation shards are uneven, and must still count each item once


class ToyData(Dataset):
    def __init__(self, n: int, offset: int = 0):
        self.n, self.offset = n, offset

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(i + self.offset)
        x = torch.rand(3, 8, 8, generator=g)
        return {"x": x, "y": x.flip(0) * 0.5 + 0.2, "index": torch.tensor(i + self.offset)}


class ToyTask:
    name, metric, mode, val_metrics = "toy", "mse", "min", ("mse",)

    def __init__(self):
        self.model = None
        self.seen: list[int] = []

    def build_model(self) -> nn.Module:
        self.model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 1))
        return self.model

    def loss(self, model, batch):
        self.seen += batch["index"].tolist()
        loss = ((model(batch["x"]) - batch["y"]) ** 2).mean()
        return loss, {}

    def evaluate(self, model, batch):
        err = ((model(batch["x"]) - batch["y"]) ** 2).mean(dim=(1, 2, 3))
        return {"mse": err.sum(), "count": torch.tensor(len(err))}

    def make_checkpoint(self, model):
        return {"kind": "toy", "format_version": 1, "model_config": {}, "model": model.state_dict()}


def _worker(checkpoint_dir: str) -> dict | None:
    """One rank: train, then compare notes with the other rank."""
    ctx = distributed.setup("cpu")  # the group outlives train() so that we can gather below
    task = ToyTask()
    seen_per_epoch = []

    def after_epoch(epoch, row):
        seen_per_epoch.append(list(task.seen))
        task.seen.clear()

    cfg = TrainConfig(epochs=2, batch_size=4, lr=1e-2, warmup_steps=1, device="cpu", progress=False,
                      checkpoint_dir=checkpoint_dir)
    result = train(task, ToyData(N_TRAIN), ToyData(N_VAL, offset=100), cfg, on_epoch_end=after_epoch)

    flat = torch.cat([p.detach().reshape(-1) for p in task.model.parameters()])
    gathered = [torch.zeros_like(flat) for _ in range(ctx.world_size)]
    dist.all_gather(gathered, flat)
    seen = [None] * ctx.world_size
    dist.all_gather_object(seen, seen_per_epoch)
    distributed.teardown()
    if result is None:
        return None
    return {
        "world_size": ctx.world_size,
        "param_diff": max((g - gathered[0]).abs().max().item() for g in gathered),
        "seen": seen,  # [rank][epoch] -> indices
        "val_mse": result.history["val_mse"].tolist(),
    }


@pytest.fixture(scope="module")
def two_rank_run(tmp_path_factory):
    ckpt = tmp_path_factory.mktemp("ddp")
    out = distributed.launch(_worker, 2, str(ckpt))
    return out, ckpt


def test_two_ranks_end_with_identical_parameters(two_rank_run):
    out, _ = two_rank_run
    assert out["world_size"] == 2
    assert out["param_diff"] == 0.0


def test_each_epoch_the_ranks_split_the_training_set_without_overlap(two_rank_run):
    out, _ = two_rank_run
    for epoch in range(2):
        rank0, rank1 = (set(out["seen"][r][epoch]) for r in range(2))
        assert not rank0 & rank1
        assert rank0 | rank1 == set(range(N_TRAIN))
    assert out["seen"][0][0] != out["seen"][0][1]  # set_epoch reshuffles


def test_all_reduced_validation_equals_a_single_process_evaluation(two_rank_run):
    out, ckpt = two_rank_run
    last = torch.load(ckpt / "last.pt", weights_only=True)
    task = ToyTask()
    model = task.build_model()
    model.load_state_dict(last["model"])
    model.eval()
    data = ToyData(N_VAL, offset=100)
    batch = {k: torch.stack([data[i][k] for i in range(N_VAL)]) for k in ("x", "y", "index")}
    with torch.no_grad():
        sums = task.evaluate(model, batch)
    assert out["val_mse"][-1] == pytest.approx(sums["mse"].item() / N_VAL, rel=1e-6)


def test_one_process_runs_inline(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed.launch(os.getpid, 1) == os.getpid()
    if not torch.cuda.is_available():
        assert distributed.launch(os.getpid, "auto") == os.getpid()


def test_under_torchrun_each_rank_runs_inline(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert distributed.launch(os.getpid, 4) == os.getpid()


def test_nproc_must_be_positive_or_auto():
    with pytest.raises(ValueError, match="nproc"):
        distributed.launch(os.getpid, 0)
