"""The training loop, with a toy task: resume, non-finite steps, best-epoch choice, logging."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from animvfi_pipeline.errors import CheckpointError
from animvfi_pipeline.training.loop import TrainConfig, train
from animvfi_pipeline.training.schedule import lr_at


class ToyData(Dataset):
    """Noisy images whose target is a fixed colour mix; set_epoch changes the noise draws."""

    def __init__(self, n: int, offset: int = 0):
        self.n, self.offset, self.epoch = n, offset, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(1000 * self.epoch + i + self.offset)
        x = torch.rand(3, 8, 8, generator=g)
        y = x.flip(0) * 0.8 + 0.1
        return {"x": x, "y": y, "index": torch.tensor(i + self.offset)}


class ToyTask:
    name, metric, mode, val_metrics = "toy", "mse", "min", ("mse",)

    def __init__(self, nan_steps=(), val_curve=None):
        self.nan_steps = set(nan_steps)  # loss calls (0-based) whose loss is NaN
        self.val_curve = val_curve  # fixed validation values per epoch, to control the best epoch
        self.calls = 0
        self.evals = 0
        self.seen_val: set[int] = set()

    def build_model(self) -> nn.Module:
        # dropout makes the result depend on the global RNG, which resume must restore
        return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Dropout(0.2), nn.Conv2d(8, 3, 1))

    def loss(self, model, batch):
        loss = ((model(batch["x"]) - batch["y"]) ** 2).mean()
        if self.calls in self.nan_steps:
            loss = loss * math.nan
        self.calls += 1
        return loss, {"mse": loss.item()}

    def evaluate(self, model, batch):
        self.seen_val.update(batch["index"].tolist())
        err = ((model(batch["x"]) - batch["y"]) ** 2).mean(dim=(1, 2, 3))
        if self.val_curve is not None:
            err = torch.full_like(err, self.val_curve[self.evals // 2])  # two val batches per epoch
            self.evals += 1
        return {"mse": err.sum(), "count": torch.tensor(len(err))}

    def make_checkpoint(self, model):
        return {"kind": "toy", "format_version": 1, "model_config": {"width": 8}, "model": model.state_dict()}


class RecordingLogger:
    def __init__(self):
        self.metrics, self.params = [], {}

    def log_params(self, params):
        self.params.update(params)

    def log_metrics(self, metrics, step):
        self.metrics.append((step, dict(metrics)))

    def log_artifact(self, path):
        pass

    def log_figure(self, fig, name):
        pass


def _cfg(tmp_path, **kw) -> TrainConfig:
    base = dict(epochs=4, batch_size=4, lr=3e-2, warmup_steps=3, min_lr_ratio=0.1, device="cpu",
                log_every=2, progress=False, checkpoint_dir=str(tmp_path), validate_start=False)
    return TrainConfig(**(base | kw))


class Interrupted(Exception):
    pass


def _interrupt_after(epoch: int):
    def hook(done: int, row: dict) -> None:
        if done == epoch:
            raise Interrupted

    return hook


def test_learns_and_reports_one_history_row_per_epoch(tmp_path):
    result = train(ToyTask(), ToyData(24), ToyData(8, offset=100), _cfg(tmp_path))
    h = result.history
    assert list(h["epoch"]) == [1, 2, 3, 4]
    assert {"train_loss", "val_mse", "lr", "samples_per_s", "data_wait_share"} <= set(h.columns)
    assert h["val_mse"].iloc[-1] < h["val_mse"].iloc[0]
    assert (tmp_path / "last.pt").exists() and (tmp_path / "best.pt").exists()


@pytest.mark.parametrize("validate_start", [False, True])
def test_interrupted_and_resumed_run_ends_with_exactly_the_same_weights(tmp_path, validate_start):
    full = train(ToyTask(), ToyData(20), ToyData(8, offset=100), _cfg(tmp_path / "a", validate_start=validate_start))

    with pytest.raises(Interrupted):
        train(ToyTask(), ToyData(20), ToyData(8, offset=100), _cfg(tmp_path / "b", validate_start=validate_start),
              on_epoch_end=_interrupt_after(2))
    assert torch.load(tmp_path / "b" / "last.pt", weights_only=True)["epoch"] == 2
    resumed = train(ToyTask(), ToyData(20), ToyData(8, offset=100),
                    _cfg(tmp_path / "b", resume=True, validate_start=validate_start))

    last_a = torch.load(tmp_path / "a" / "last.pt", weights_only=True)["model"]
    last_b = torch.load(tmp_path / "b" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(last_a[k], last_b[k]) for k in last_a)
    assert all(torch.equal(v, resumed.model.state_dict()[k]) for k, v in full.model.state_dict().items())
    assert list(resumed.history["epoch"]) == [0, 1, 2, 3, 4][0 if validate_start else 1:]
    assert resumed.history["val_mse"].tolist() == full.history["val_mse"].tolist()


def test_non_finite_losses_are_skipped_and_counted(tmp_path):
    logger = RecordingLogger()
    result = train(ToyTask(nan_steps={1, 4}), ToyData(16), ToyData(8, offset=100), _cfg(tmp_path, epochs=2),
                   logger=logger)
    assert result.bad_steps == 2
    assert result.history["bad_steps"].iloc[-1] == 2
    assert all(torch.isfinite(p).all() for p in result.model.parameters())
    assert any("toy/bad_steps" in m for _, m in logger.metrics)
    assert math.isfinite(result.history["train_loss"].iloc[-1])


def test_persistent_non_finite_loss_stops_with_a_clear_error(tmp_path):
    task = ToyTask(nan_steps=range(2, 100))
    with pytest.raises(RuntimeError, match=r"4 consecutive training steps .*non-finite.*max_bad_steps=3"):
        train(task, ToyData(64), ToyData(8, offset=100), _cfg(tmp_path, max_bad_steps=3))
    assert task.calls == 6  # two good steps, then it gave up on the fourth bad one


def test_corrupt_last_checkpoint_is_an_error_not_a_silent_fresh_start(tmp_path):
    (tmp_path / "last.pt").write_bytes(b"not a checkpoint, truncated by a crash")
    task = ToyTask()
    with pytest.raises(CheckpointError, match=r"last\.pt.*cannot be read"):
        train(task, ToyData(16), ToyData(8, offset=100), _cfg(tmp_path, resume=True))
    assert task.calls == 0


def test_checkpoint_of_another_kind_is_refused(tmp_path):
    torch.save({"kind": "animvfi.vfi", "model": {}}, tmp_path / "last.pt")
    with pytest.raises(CheckpointError, match="not a toy training checkpoint"):
        train(ToyTask(), ToyData(16), ToyData(8, offset=100), _cfg(tmp_path, resume=True))


def test_best_epoch_is_chosen_on_the_validation_split_only(tmp_path):
    task = ToyTask(val_curve=[0.5, 0.2, 0.3, 0.4])
    result = train(task, ToyData(16), ToyData(8, offset=100), _cfg(tmp_path, epochs=4))
    assert task.seen_val == set(range(100, 108))  # validation never touched training items
    assert result.best_epoch == 2 and result.best_metric == pytest.approx(0.2)
    assert result.checkpoint["epoch"] == 2
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    last = torch.load(tmp_path / "last.pt", weights_only=True)
    assert best["epoch"] == 2 and last["epoch"] == 4
    weights = result.model.state_dict()
    assert all(torch.equal(best["model"][k], weights[k]) for k in weights)
    assert not all(torch.equal(last["model"][k], weights[k]) for k in weights)


def test_when_no_epoch_beats_the_starting_weights_they_are_kept(tmp_path):
    # validate_start: a model that starts as its prior never ends worse than it on validation.
    task = ToyTask(val_curve=[0.1, 0.5, 0.3])  # the start, then two worse epochs
    start = task.build_model().state_dict()
    torch.manual_seed(0)
    task.build_model = lambda: _with_weights(start)
    result = train(task, ToyData(16), ToyData(8, offset=100), _cfg(tmp_path, epochs=2, validate_start=True))
    assert list(result.history["epoch"]) == [0, 1, 2]
    assert result.best_epoch == 0 and result.best_metric == pytest.approx(0.1)
    assert all(torch.equal(v, result.model.state_dict()[k]) for k, v in start.items())
    assert torch.load(tmp_path / "best.pt", weights_only=True)["epoch"] == 0


def _with_weights(state):
    model = ToyTask().build_model()
    model.load_state_dict(state)
    return model


def test_metrics_are_logged_per_step_and_per_epoch_with_the_stage_prefix(tmp_path):
    logger = RecordingLogger()
    train(ToyTask(), ToyData(16), ToyData(8, offset=100), _cfg(tmp_path, epochs=2), logger=logger)
    names = set().union(*(m for _, m in logger.metrics))
    assert {"toy/train_loss", "toy/lr", "toy/samples_per_s", "toy/val_mse", "toy/data_wait_share"} <= names
    assert all(n.startswith("toy/") for n in names)
    steps = [s for s, _ in logger.metrics]
    assert steps == sorted(steps) and steps[-1] == 8
    assert logger.params["toy.train"]["epochs"] == 2


def test_unknown_training_option_is_rejected_by_name():
    with pytest.raises(ValueError, match="learning_rate"):
        TrainConfig.from_dict({"learning_rate": 1e-3})


def test_lr_warms_up_then_decays_to_the_floor():
    lrs = [lr_at(s, 1.0, warmup_steps=10, total_steps=100, min_lr_ratio=0.1) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a <= b for a, b in zip(lrs[:10], lrs[1:10]))
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert lrs[-1] == pytest.approx(0.1, abs=1e-3)


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_forced_mixed_precision_and_channels_last_still_train(tmp_path, amp):
    cfg = _cfg(tmp_path, epochs=2, amp=amp, channels_last=True)
    result = train(ToyTask(), ToyData(16), ToyData(8, offset=100), cfg)
    assert result.bad_steps == 0
    assert result.history["val_mse"].iloc[-1] < result.history["val_mse"].iloc[0]
    assert all(p.dtype == torch.float32 for p in result.model.parameters())  # weights stay fp32


@pytest.mark.timeout(120)  # the failure is a hang
def test_worker_processes_start_every_epoch_after_the_parent_used_opencv_threads(tmp_path):
    # DataLoader workers are forked: touching OpenCV's thread pool in a child forked from a
    # parent that had used it hung the second epoch's workers. Two epochs with a worker each.
    import cv2
    import numpy as np

    cv2.setNumThreads(2)
    cv2.resize(np.zeros((1080, 1920, 3), np.uint8), (960, 540))  # starts OpenCV's pool here
    result = train(ToyTask(), ToyData(8), ToyData(4, offset=100), _cfg(tmp_path, epochs=2, num_workers=1))
    assert list(result.history["epoch"]) == [1, 2]


@pytest.mark.parametrize("validate_start", [False, True])
def test_validation_keeps_no_autograd_graph(tmp_path, validate_start):
    # With gradients on, every whole-frame validation batch held its autograd graph: the default
    # run's main process peaked at 5-6 GB RSS (benchmarks/bench_training_memory.py).
    graph_built = []

    class Watching(ToyTask):
        def evaluate(self, model, batch):
            out = super().evaluate(model, batch)
            graph_built.append(out["mse"].requires_grad)
            return out

    train(Watching(), ToyData(8), ToyData(8, offset=100), _cfg(tmp_path, epochs=1, validate_start=validate_start))
    assert graph_built and not any(graph_built)


def test_a_model_with_nothing_to_train_is_refused_by_name(tmp_path):
    class FrozenTask(ToyTask):
        def build_model(self):
            return super().build_model().requires_grad_(False)

    with pytest.raises(ValueError, match="no trainable parameters"):
        train(FrozenTask(), ToyData(16), ToyData(8, offset=100), _cfg(tmp_path))
