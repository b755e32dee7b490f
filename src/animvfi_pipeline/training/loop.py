"""One training loop for both stages (flow pretraining, VFI training). Read it top to bottom.

What differs between the stages lives in a ``Task`` (``training/tasks.py``): how to build the
model, the loss of a batch, the validation sums, which metric picks the best epoch. Everything
else is here: AdamW, warmup + cosine, gradient clipping, AMP and channels_last on CUDA,
non-finite steps skipped, per-epoch validation, atomic checkpoints and exact resume, DDP.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from animvfi_pipeline.data.torch_dataset import to_float
from animvfi_pipeline.errors import CheckpointError
from animvfi_pipeline.models.checkpoint import verify_digest, write_checkpoint_file
from animvfi_pipeline.training import distributed
from animvfi_pipeline.training.schedule import lr_at
from animvfi_pipeline.training.tracking import MetricLogger, NullLogger

if TYPE_CHECKING:
    from animvfi_pipeline.training.tasks import Task

log = logging.getLogger(__name__)

LAST = "last.pt"
BEST = "best.pt"


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 8
    lr: float = 3e-4
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    min_lr_ratio: float = 0.05  # the cosine ends at lr * min_lr_ratio
    grad_clip: float | None = 1.0  # max global gradient norm; None = no clipping
    amp: str = "auto"  # "auto" (bf16, else fp16, on CUDA; off on CPU) | "bf16" | "fp16" | "off"
    channels_last: str | bool = "auto"  # "auto" = on CUDA only
    seed: int = 0
    num_workers: int = 0
    max_bad_steps: int = 10  # consecutive non-finite steps tolerated before giving up
    checkpoint_dir: str | None = None  # last.pt (every epoch) and best.pt; None = keep nothing
    resume: bool = False  # restart from checkpoint_dir/last.pt if it exists
    device: str = "auto"  # "auto" | "cpu" | "cuda"
    log_every: int = 20  # steps between per-step metrics
    max_steps_per_epoch: int | None = None  # cap for quick runs and benchmarks
    val_batch_size: int | None = None  # default: batch_size
    progress: bool = True  # tqdm bar on rank 0
    # Validate the starting weights too (as "epoch 0"): if no epoch beats them, they are what is
    # kept. A zero-initialised correction starts as its prior, so training never ends worse than
    # the prior on the validation split.
    validate_start: bool = True

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown training option(s) {unknown}; known: {sorted(known)}")
        return cls(**values)


@dataclass
class TrainResult:
    model: torch.nn.Module  # best weights, on CPU, eval mode
    checkpoint: dict[str, Any]  # the best epoch's checkpoint (models/checkpoint.py format)
    history: pd.DataFrame  # one row per epoch
    best_metric: float
    best_epoch: int  # 1-based; 0 = no epoch beat the starting weights (validate_start)
    bad_steps: int = 0
    extras: dict[str, Any] = field(default_factory=dict)


def train(
    task: Task,
    train_set: Dataset,
    val_set: Dataset,
    cfg: TrainConfig,
    logger: MetricLogger | None = None,
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
) -> TrainResult | None:
    """Train ``task``'s model; validate on ``val_set`` every epoch and keep the best epoch.

    Runs as one rank of a DDP job when the torchrun environment says so (see distributed.py).
    Returns the result on rank 0 and ``None`` on the other ranks. ``on_epoch_end(epoch, row)``
    is called on every rank after each epoch's checkpoint is written (epoch is 1-based).
    """
    owns_group = not torch.distributed.is_initialized()
    ctx = distributed.setup(cfg.device)
    logger = (logger or NullLogger()) if ctx.is_main else NullLogger()
    stage = task.name
    device = ctx.device
    amp_dtype = _amp_dtype(cfg.amp, device)
    channels_last = device.type == "cuda" if cfg.channels_last == "auto" else bool(cfg.channels_last)
    ckpt_dir = Path(cfg.checkpoint_dir) if cfg.checkpoint_dir else None

    # -- model, optimizer ------------------------------------------------------------------
    _seed_everything(cfg.seed)  # same seed on every rank: identical initial weights
    model = task.build_model().to(device)
    info = task.make_checkpoint(model)  # its kind and config, for resume checks and run params
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:  # e.g. backbone none + fusion mean + freeze_flow: a fixed model, nothing to fit
        raise ValueError(f"{stage}: the model has no trainable parameters; check its config "
                         f"(a frozen flow net with no synthesis net and no selector learns nothing)")
    optimizer = torch.optim.AdamW(
        [
            # Weight decay shrinks weight matrices and kernels; on biases and norm gains it only hurts.
            {"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
        ],
        lr=cfg.lr,
        betas=(0.9, 0.999),
    )
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)

    # -- data ------------------------------------------------------------------------------
    # The order of batches depends only on (seed, epoch): the sampler reseeds itself from
    # set_epoch, the loader's generator (which seeds the workers) is reseeded below.
    sampler = distributed.train_sampler(train_set, ctx, cfg.seed)
    loader_rng = torch.Generator()
    common = dict(num_workers=cfg.num_workers, pin_memory=device.type == "cuda", worker_init_fn=_seed_worker)
    train_loader = DataLoader(train_set, cfg.batch_size, sampler=sampler, generator=loader_rng, **common)
    val_sampler = distributed.ShardSampler(len(val_set), ctx.rank, ctx.world_size)
    val_loader = DataLoader(val_set, cfg.val_batch_size or cfg.batch_size, sampler=val_sampler, **common)
    if len(val_set) == 0:
        log.warning("%s: the validation set is empty; the last epoch is kept as the best", stage)
    steps_per_epoch = len(train_loader)
    if cfg.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, cfg.max_steps_per_epoch)
    if steps_per_epoch == 0:
        raise ValueError(f"{stage}: the training set is empty")
    total_steps = cfg.epochs * steps_per_epoch

    # -- resume ----------------------------------------------------------------------------
    start_epoch, step, bad_total = 0, 0, 0
    best_metric, best_epoch, best_ckpt = math.nan, 0, None
    history: list[dict[str, Any]] = []
    last_path = ckpt_dir / LAST if ckpt_dir else None
    if cfg.resume and last_path is not None and last_path.exists():
        state = _load(last_path, info["kind"], ("model", "optimizer", "epoch", "step", "best_metric", "rng"))
        _restore(last_path, state, model, optimizer, scaler)
        start_epoch, step, bad_total = state["epoch"], state["step"], state.get("bad_steps", 0)
        best_metric, best_epoch = state["best_metric"], state.get("best_epoch", 0)
        history = list(state.get("history", []))
        if ctx.world_size == 1:  # the RNG streams of other ranks were not saved
            _set_rng_state(state["rng"])
        else:
            _seed_everything(cfg.seed + 1000 * start_epoch + ctx.rank)
        if (ckpt_dir / BEST).exists():
            best_ckpt = _load(ckpt_dir / BEST, info["kind"])
        log.info("%s: resumed from %s after epoch %d (step %d)", stage, last_path, start_epoch, step)
    elif cfg.resume:
        log.info("%s: resume asked but there is no %s yet; starting fresh", stage, last_path)
    if start_epoch == 0 and cfg.validate_start and len(val_set) > 0:
        val = _validate(task, model, val_loader, ctx, amp_dtype, channels_last)
        best_metric, best_epoch, started_best = val.get(task.metric, math.nan), 0, True
        history.append({"epoch": 0, "step": 0, **{f"val_{k}": v for k, v in val.items()}})
        best_ckpt = _model_only(_training_state(task, model, optimizer, scaler, cfg, 0, 0, total_steps,
                                                best_metric, 0, 0, history))
        log.info("%s: the starting weights score %s on validation", stage,
                 ", ".join(f"val_{k} {v:.4f}" for k, v in val.items()))
        if ctx.is_main:
            logger.log_metrics({f"{stage}/val_{k}": v for k, v in val.items()}, 0)
            if ckpt_dir is not None:
                _save(best_ckpt, ckpt_dir / BEST)
    else:  # resumed: the starting weights count if the interrupted run validated them
        started_best = any(row.get("epoch") == 0 for row in history)
    if start_epoch == 0:
        _seed_everything(cfg.seed + ctx.rank)  # ranks differ from here on (dropout and the like)

    train_model = distributed.wrap(model, ctx, getattr(task, "find_unused_parameters", False))
    if ctx.is_main:
        logger.log_params({f"{stage}.train": dataclasses.asdict(cfg), f"{stage}.model": info.get("model_config", {})})
    bad_streak = 0
    figure_batch = None

    for epoch in range(start_epoch, cfg.epochs):
        sampler.set_epoch(epoch)
        if hasattr(train_set, "set_epoch"):
            train_set.set_epoch(epoch)
        loader_rng.manual_seed(cfg.seed * 1_000_003 + epoch)

        # -- train one epoch -----------------------------------------------------------------
        model.train()
        epoch_start = time.perf_counter()
        loss_sum, loss_count, wait_total, samples = 0.0, 0, 0.0, 0
        parts_sum: dict[str, float] = {}
        window = _Window()
        bar = tqdm(total=steps_per_epoch, desc=f"{stage} {epoch + 1}/{cfg.epochs}", leave=False,
                   disable=not (ctx.is_main and cfg.progress))
        batches = iter(train_loader)
        t_ready = time.perf_counter()
        for _ in range(steps_per_epoch):
            batch = next(batches)
            t_batch = time.perf_counter()
            batch = _to_device(batch, device, channels_last)
            n = _batch_size(batch) * ctx.world_size

            lr = lr_at(step, cfg.lr, cfg.warmup_steps, total_steps, cfg.min_lr_ratio)
            for group in optimizer.param_groups:
                group["lr"] = lr
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                loss, parts = task.loss(train_model, batch)
            # Every rank must take the same branch, or DDP's gradient all-reduce would hang.
            ok = distributed.all_true(bool(torch.isfinite(loss.detach())), ctx)
            if ok:
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
                grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip or math.inf)
                # With fp16 the scaler skips overflowing steps itself; elsewhere we must.
                ok = scaler.is_enabled() or bool(torch.isfinite(grad_norm))
                if ok:
                    scaler.step(optimizer)
                scaler.update()
            optimizer.zero_grad(set_to_none=True)
            step += 1

            if ok:
                bad_streak = 0
                loss_value = loss.item()
                loss_sum, loss_count = loss_sum + loss_value, loss_count + 1
                for k, v in parts.items():
                    if k != "total":  # the loss itself, already recorded
                        parts_sum[k] = parts_sum.get(k, 0.0) + float(v)
            else:
                bad_streak, bad_total = bad_streak + 1, bad_total + 1
                log.warning("%s: non-finite loss or gradient at step %d, step skipped (%d in a row)",
                            stage, step, bad_streak)
                logger.log_metrics({f"{stage}/bad_steps": bad_total}, step)
                if bad_streak > cfg.max_bad_steps:
                    raise RuntimeError(
                        f"{stage}: {bad_streak} consecutive training steps had a non-finite loss or "
                        f"gradient (max_bad_steps={cfg.max_bad_steps}); stopping at epoch {epoch + 1}, "
                        f"step {step}. Lower the learning rate, turn amp off, or check the data."
                    )

            t_done = time.perf_counter()
            wait = t_batch - t_ready
            wait_total, samples = wait_total + wait, samples + n
            window.add(n, wait, t_done - t_ready, loss_value if ok else math.nan)
            t_ready = t_done
            bar.update(1)
            if step % cfg.log_every == 0 or not ok:
                bar.set_postfix(loss=f"{window.loss:.4f}", samples_s=f"{window.rate:.1f}")
            if step % cfg.log_every == 0 and ok:
                metrics = {f"{stage}/train_loss": loss_value, f"{stage}/lr": lr,
                           f"{stage}/samples_per_s": window.rate, f"{stage}/data_wait_share": window.wait_share}
                metrics.update({f"{stage}/train_{k}": float(v) for k, v in parts.items() if k != "total"})
                logger.log_metrics(metrics, step)
                window = _Window()
        bar.close()
        del batches  # stops this epoch's workers before validation starts its own
        train_time = time.perf_counter() - epoch_start

        # -- validate ------------------------------------------------------------------------
        totals = distributed.all_reduce_sum(
            {"loss": torch.tensor(loss_sum), "steps": torch.tensor(float(loss_count))}, ctx
        )
        val = _validate(task, model, val_loader, ctx, amp_dtype, channels_last)
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "step": step,
            "train_loss": (totals["loss"] / totals["steps"]).item() if totals["steps"] > 0 else math.nan,
            **{f"train_{k}": v / max(loss_count, 1) for k, v in parts_sum.items()},
            **{f"val_{k}": v for k, v in val.items()},
            "lr": lr,
            "samples_per_s": samples / train_time,
            "data_wait_share": wait_total / train_time,
            "bad_steps": bad_total,
            "time_s": time.perf_counter() - epoch_start,
        }
        history.append(row)
        value = val.get(task.metric, math.nan)
        improved = (
            len(val_set) == 0
            or (best_epoch == 0 and not started_best)
            or (value > best_metric if task.mode == "max" else value < best_metric)
        )
        if improved:
            best_metric, best_epoch = value, epoch + 1
        # Per-step curves own the plain names (flow/train_loss); epoch means get an epoch_ prefix.
        logger.log_metrics({f"{stage}/{k}" if k.startswith("val_") else f"{stage}/epoch_{k}": v
                            for k, v in row.items() if k != "step"}, step)
        log.info("%s epoch %d/%d: train_loss %.4f, %s (best %.4f at epoch %d), %.1f samples/s",
                 stage, epoch + 1, cfg.epochs, row["train_loss"],
                 ", ".join(f"val_{k} {v:.4f}" for k, v in val.items()) or "no validation",
                 best_metric, best_epoch, row["samples_per_s"])

        # -- checkpoint (rank 0) -------------------------------------------------------------
        state = _training_state(task, model, optimizer, scaler, cfg, epoch + 1, step, total_steps,
                                best_metric, best_epoch, bad_total, history)
        if improved:
            best_ckpt = _model_only(state)
        if ctx.is_main and ckpt_dir is not None:
            if improved:
                _save(best_ckpt, ckpt_dir / BEST)
            _save(state, ckpt_dir / LAST)
        if ctx.is_main and hasattr(task, "figure") and getattr(logger, "active", True):
            figure_batch = figure_batch if figure_batch is not None else _first_batch(val_loader)
            if figure_batch is not None:
                _log_figure(task, model, figure_batch, device, channels_last, logger,
                            f"{stage}/epoch_{epoch + 1:03d}.png")
        distributed.barrier(ctx)
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, row)

    if best_ckpt is None:  # resumed a run that had already finished without a best.pt
        best_ckpt = _training_state(task, model, optimizer, scaler, cfg, start_epoch, step, total_steps,
                                    best_metric, best_epoch, bad_total, history)
        best_ckpt |= {"optimizer": None, "scaler": None, "rng": None}
    if owns_group:
        distributed.teardown()
    if not ctx.is_main:
        return None
    model.load_state_dict(best_ckpt["model"])
    model = model.to("cpu", memory_format=torch.contiguous_format).eval()
    return TrainResult(model=model, checkpoint=best_ckpt, history=pd.DataFrame(history),
                       best_metric=best_metric, best_epoch=best_epoch, bad_steps=bad_total)


@torch.no_grad()
def _model_only(state: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint of the weights as they are now, without the optimizer state."""
    # A copy: state_dict() tensors share storage with the weights training keeps changing.
    # The model file does not need Adam's moments either.
    weights = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in state["model"].items()}
    return {**state, "model": weights, "optimizer": None, "scaler": None, "rng": None}


@torch.no_grad()  # without it every whole-frame batch kept its autograd graph: 5 GB peak RSS on CPU
def _validate(task, model, loader, ctx, amp_dtype, channels_last) -> dict[str, float]:
    """Mean of each validation metric over the whole split, exactly (sums and a count all-reduced)."""
    model.eval()
    sums = {k: torch.zeros((), dtype=torch.float64) for k in (*task.val_metrics, "count")}
    for batch in loader:
        batch = _to_device(batch, ctx.device, channels_last)
        with torch.autocast(ctx.device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            out = task.evaluate(model, batch)
        for k in sums:
            sums[k] += out[k].detach().double().sum().cpu()
    sums = distributed.all_reduce_sum(sums, ctx)
    count = sums.pop("count").item()
    model.train()
    if count == 0:
        return {}
    return {k: (v / count).item() for k, v in sums.items()}


# -- checkpoints ---------------------------------------------------------------------------


def _training_state(task, model, optimizer, scaler, cfg, epoch, step, total_steps, best_metric, best_epoch,
                    bad_steps, history) -> dict[str, Any]:
    """A plain dict: the task's model checkpoint plus what resuming needs (docs/architecture.md)."""
    state = task.make_checkpoint(model)
    state.update(
        optimizer=optimizer.state_dict(),
        scheduler={"step": step, "total_steps": total_steps, "warmup_steps": cfg.warmup_steps},
        scaler=scaler.state_dict(),
        epoch=epoch,
        step=step,
        best_metric=float(best_metric),
        best_epoch=best_epoch,
        bad_steps=bad_steps,
        run_config=dataclasses.asdict(cfg),
        history=[dict(r) for r in history],
        rng=_rng_state(),
    )
    return state


def _save(state: dict[str, Any], path: Path) -> None:
    write_checkpoint_file(path, state)


def _load(path: Path, kind: str, required: tuple[str, ...] = ("model", "epoch", "best_metric")) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated or foreign files
        raise CheckpointError(path, f"cannot be read as a training checkpoint ({exc}); delete it to "
                                    "start afresh") from exc
    if not isinstance(state, dict) or state.get("kind") != kind:
        found = state.get("kind") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(path, f"is not a {kind} training checkpoint (found {found!r})")
    verify_digest(path, state, "delete it to start afresh")
    missing = [k for k in required if state.get(k) is None]
    if missing:
        raise CheckpointError(path, f"training checkpoint lacks {missing}")
    return state


def _restore(path: Path, state, model, optimizer, scaler) -> None:
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise CheckpointError(path, f"does not match this model or optimizer ({exc})") from exc


def _rng_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        # numpy's state as tensors and numbers, which torch.load(weights_only=True) accepts
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "python": random.getstate(),
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(_tuples(state["python"]))


def _tuples(x):
    # random.setstate wants the tuples back; a round trip through torch.load may give lists.
    return tuple(_tuples(v) for v in x) if isinstance(x, (list, tuple)) else x


# -- small helpers -------------------------------------------------------------------------


def _amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    if amp == "off":
        return None
    if amp == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if amp in ("bf16", "fp16"):
        return torch.bfloat16 if amp == "bf16" else torch.float16
    raise ValueError(f"amp must be 'auto', 'bf16', 'fp16' or 'off', not {amp!r}")


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _seed_worker(worker_id: int) -> None:
    # torch seeds each worker from the loader's generator; numpy and random must follow it.
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
    # No cv2.setNumThreads here: DataLoader workers are forked, and resizing OpenCV's thread pool
    # in a child forked from a parent that has used it hangs (seen in pthread_cond_destroy at the
    # second epoch's workers). Workers that compute the DIS prior may use several OpenCV threads;
    # the stored prior (ingestion.dis_prior) avoids DIS in the workers altogether.


def _to_device(batch: dict[str, Any], device: torch.device, channels_last: bool) -> dict[str, Any]:
    # Compact samples (uint8 frames, float16 flows: a third of the bytes through the workers'
    # shared memory and the bus) become float32 here, on the device, with the same bits.
    batch = to_float({k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
                      for k, v in batch.items()})
    out = {}
    for k, v in batch.items():
        if isinstance(v, torch.Tensor):
            if channels_last and v.ndim == 4 and v.is_floating_point():
                v = v.contiguous(memory_format=torch.channels_last)
        out[k] = v
    return out


def _batch_size(batch: dict[str, Any]) -> int:
    return next(len(v) for v in batch.values() if isinstance(v, torch.Tensor))


def _first_batch(loader: DataLoader) -> dict[str, Any] | None:
    return next(iter(loader), None)


def _log_figure(task, model, batch, device, channels_last, logger, name) -> None:
    import matplotlib.pyplot as plt

    model.eval()
    with torch.no_grad():
        fig = task.figure(model, _to_device(batch, device, channels_last))
    model.train()
    if fig is not None:
        logger.log_figure(fig, name)
        plt.close(fig)


class _Window:
    """Throughput, data-wait share and mean loss since the last per-step log."""

    def __init__(self) -> None:
        self.samples, self.wait, self.elapsed, self.losses = 0, 0.0, 0.0, []

    def add(self, samples: int, wait: float, elapsed: float, loss: float) -> None:
        self.samples += samples
        self.wait += wait
        self.elapsed += elapsed
        if math.isfinite(loss):
            self.losses.append(loss)

    @property
    def rate(self) -> float:
        return self.samples / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def wait_share(self) -> float:
        return self.wait / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def loss(self) -> float:
        return sum(self.losses) / len(self.losses) if self.losses else math.nan
