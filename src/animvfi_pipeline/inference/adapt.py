"""Test-time adaptation: fine-tune a copy of the model on the clip it is about to interpolate.

The clip teaches itself: three consecutive distinct drawings of one shot (``scenes.triplets_of``,
after cuts and held drawings are found) make a training triplet, the middle drawing being the
target between its neighbours -- at twice the spacing the model will interpolate at, but with
the clip's own style, line work and kind of motion. A few triplets spread over the clip are held
out; the adapted weights are used only if they interpolate those better than the original ones,
so ``--adapt`` can cost time but never quality on the clip's own held-out drawings.

Memory stays bounded whatever the clip's length: at most ``max_triplets`` triplets are kept, at
most ``max_side`` pixels on the long side, and training steps see random crops of them.

The flow network's DIS prior (fixed: nothing in it learns) is computed once per triplet on the
whole frames and cropped with them: each step then skips DIS, and the network sees the prior it
gets at inference, not DIS of a crop (as in VFI training, which reads it from the store).
"""
from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from animvfi_pipeline.inference.scenes import (
    DEFAULT_DUP_THRESHOLD,
    DEFAULT_SCENE_THRESHOLD,
    FrameAnalyzer,
    distinct_drawings,
    thumbnail_size,
    triplets_of,
)
from animvfi_pipeline.inference.video_io import ClipInfo, probe, read_frames
from animvfi_pipeline.training.losses import vfi_loss

log = logging.getLogger(__name__)

PARAMETER_GROUPS = ("all", "flow", "synthesis")
Triplet = tuple[np.ndarray, np.ndarray, np.ndarray]  # first, middle (the target), last; uint8 RGB


@dataclass
class AdaptConfig:
    """How long and how the model adapts; see docs/interpolate.md ("--adapt") for the measurements."""

    seconds: float | None = 120.0  # wall-clock budget for the whole adaptation (None: steps only)
    steps: int | None = None  # stop after this many optimizer steps (None: the budget decides)
    parameters: str = "all"  # all | flow | synthesis: which part of the network learns
    lr: float = 1e-4
    weight_decay: float = 1e-4
    batch_size: int = 4
    crop: int = 192  # training steps see random crops of this size (pixels)
    max_triplets: int = 48  # triplets kept in memory, spread over the clip
    held_out: int = 8  # of those, kept aside to decide whether the adapted model is used
    max_side: int = 960  # frames are kept at most this long (pixels), matching the model's scale
    scene_threshold: float = DEFAULT_SCENE_THRESHOLD
    dup_threshold: float = DEFAULT_DUP_THRESHOLD
    seed: int = 0

    def __post_init__(self) -> None:
        if self.parameters not in PARAMETER_GROUPS:
            raise ValueError(f"parameters must be one of {', '.join(PARAMETER_GROUPS)}, got {self.parameters!r}")
        if self.seconds is None and self.steps is None:
            raise ValueError("adaptation needs a time budget (seconds) or a number of steps")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"adapt steps must be 1 or more, got {self.steps}")
        if self.seconds is not None and self.seconds <= 0:
            raise ValueError(f"adapt seconds must be positive, got {self.seconds}")


@dataclass
class AdaptResult:
    model: torch.nn.Module  # the adapted copy if it won on the held-out triplets, else the original
    used_adapted: bool
    steps: int
    seconds: float
    held_out_before: float  # PSNR (dB) of the original model on the held-out triplets
    held_out_after: float  # ... and of the adapted copy (NaN when there was nothing to adapt on)
    n_train: int
    n_held_out: int

    def summary(self) -> str:
        """The one line the CLI prints: what was tried and which model interpolates the clip."""
        if self.n_train == 0:
            return (f"adapt: the clip has too few distinct drawings to learn from "
                    f"({self.n_held_out} held-out triplet(s)); using the original model")
        if self.steps == 0:
            return (f"adapt: the budget was spent reading the clip and scoring {self.n_held_out} held-out "
                    f"triplets ({self.seconds:.0f} s) before any training step; using the original model "
                    f"(raise --adapt-seconds)")
        verdict = "using the adapted model" if self.used_adapted else "no gain; using the original model"
        return (f"adapt: {self.steps} steps in {self.seconds:.0f} s, held-out PSNR {self.held_out_before:.2f} -> "
                f"{self.held_out_after:.2f} dB: {verdict}")


def adapt_to_clip(model: torch.nn.Module, source: str | Path, config: AdaptConfig | None = None,
                  device: torch.device | str = "cpu", progress: bool = False,
                  folder_fps: Fraction = Fraction(24)) -> AdaptResult:
    """Fine-tune a copy of ``model`` on triplets of the clip at ``source`` (video or frame folder).
    ``model`` itself is never changed."""
    cfg = config or AdaptConfig()
    started = time.perf_counter()
    info = probe(source, folder_fps)
    triplets = clip_triplets(info, cfg, progress)
    train_set, held_out = split_held_out(triplets, cfg.held_out)
    return adapt_on_triplets(model, train_set, held_out, cfg, device, progress, started)


def clip_triplets(info: ClipInfo, cfg: AdaptConfig, progress: bool = False) -> list[Triplet]:
    """Up to ``cfg.max_triplets`` triplets of distinct drawings spread evenly over the clip, never
    across a scene cut, as frames at most ``cfg.max_side`` long: two decoding passes, the first on
    thumbnails to find cuts and holds, the second keeping only the frames the triplets use."""
    analyzer = FrameAnalyzer()
    with tqdm(total=info.frame_count, unit="frame", desc="adapt: reading", disable=not progress,
              dynamic_ncols=True, leave=False) as bar:
        for frame in read_frames(info, size=thumbnail_size(info.width, info.height)):
            analyzer.add(frame)
            bar.update()
    shots = distinct_drawings(analyzer.analysis, cfg.scene_threshold, cfg.dup_threshold)
    chosen = spread(triplets_of(shots, gaps=(1,)), cfg.max_triplets)
    wanted = {i for triplet in chosen for i in triplet}
    size = thumbnail_size(info.width, info.height, cfg.max_side)
    frames = {i: f for i, f in enumerate(read_frames(info, size=size)) if i in wanted}
    return [(frames[a], frames[b], frames[c]) for a, b, c in chosen]


def spread(items: list, k: int) -> list:
    """At most ``k`` of ``items``, evenly spaced from the first to the last, in order."""
    if len(items) <= k:
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, k).round().astype(int)]


def split_held_out(triplets: list[Triplet], n_held_out: int) -> tuple[list[Triplet], list[Triplet]]:
    """(train, held out): held-out triplets spread over the clip, at most a quarter of them and
    at least one. Training triplets that show a held-out target frame are dropped, so the check
    scores in-betweens the adaptation never saw."""
    if not triplets:
        return [], []
    n = max(1, min(n_held_out, len(triplets) // 4))
    held_idx = set(np.linspace(0, len(triplets) - 1, n + 2)[1:-1].round().astype(int).tolist())
    held = [triplets[i] for i in sorted(held_idx)]
    targets = [t[1] for t in held]
    train = [t for i, t in enumerate(triplets)
             if i not in held_idx and not any(f is target for f in t for target in targets)]
    return train, held


def adapt_on_triplets(model: torch.nn.Module, train_set: list[Triplet], held_out: list[Triplet],
                      cfg: AdaptConfig, device: torch.device | str = "cpu", progress: bool = False,
                      started: float | None = None) -> AdaptResult:
    """The adaptation proper: AdamW on ``cfg.parameters`` with the training loss (Charbonnier,
    ``training.losses.vfi_loss``), until ``cfg.steps`` or the time budget, then the held-out check.
    ``started`` (``time.perf_counter()``) counts earlier work, such as decoding, into the budget."""
    started = time.perf_counter() if started is None else started
    device = torch.device(device)
    model = model.to(device).eval()
    before = held_out_psnr(model, held_out, device)
    if not train_set or not held_out:
        return AdaptResult(model, False, 0, time.perf_counter() - started, before, math.nan,
                           len(train_set), len(held_out))
    check_seconds = time.perf_counter() - started  # the same check runs again at the end
    adapted = copy.deepcopy(model).train()
    params = trainable_parameters(adapted, cfg.parameters)
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    rng = np.random.default_rng(cfg.seed)
    steps = 0
    deadline = None if cfg.seconds is None else started + cfg.seconds - check_seconds
    priors = whole_frame_priors(adapted, train_set, device, progress)
    with tqdm(total=cfg.steps, unit="step", desc="adapting", disable=not progress, dynamic_ncols=True,
              leave=False) as bar:
        while (cfg.steps is None or steps < cfg.steps) and (deadline is None or time.perf_counter() < deadline):
            img0, target, img1, prior = random_batch(train_set, cfg.batch_size, cfg.crop, rng, device, priors)
            out = adapted(img0, img1, 0.5, prior=prior)
            loss, _ = vfi_loss({"pred": out["pred"]}, target, {"charbonnier": 1.0})
            if not torch.isfinite(loss):
                # The copy diverged (and backpropagating NaN through grid_sample can crash torch):
                # stop here; the held-out check refuses it.
                log.debug("adaptation diverged after %d steps", steps)
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            steps += 1
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.4f}")
    if steps == 0:  # the budget went on reading the clip and the first check: nothing to compare
        return AdaptResult(model, False, 0, time.perf_counter() - started, before, math.nan,
                           len(train_set), len(held_out))
    adapted.eval()
    after = held_out_psnr(adapted, held_out, device)
    better = after > before  # NaN (a diverged copy) is never better
    return AdaptResult(adapted if better else model, better, steps, time.perf_counter() - started, before, after,
                       len(train_set), len(held_out))


def trainable_parameters(model: torch.nn.Module, group: str) -> list[torch.nn.Parameter]:
    """The parameters ``group`` adapts; every other parameter of ``model`` is frozen."""
    # "synthesis": every learned part after the flow (the synthesis net and the warp selector).
    parts = {"all": [model], "flow": [model.flownet],
             "synthesis": [m for m in (model.synthesis, getattr(model, "selector", None)) if m is not None]}
    model.requires_grad_(False)
    for part in parts[group]:
        part.requires_grad_(True)
    # The flow network runs under no_grad when the config freezes it; adapting it needs gradients.
    if group != "synthesis" and getattr(model.cfg, "freeze_flow", False):
        model.cfg = dataclasses.replace(model.cfg, freeze_flow=False)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:  # backbone none with the mean fusion: nothing after the flow learns
        raise ValueError(f"--parameters {group}: this model has no learned parts there; use all or flow")
    return params


@torch.no_grad()
def whole_frame_priors(model: torch.nn.Module, triplets: list[Triplet], device: torch.device,
                       progress: bool = False) -> list[np.ndarray] | None:
    """The flow network's prior (float16 (4, H, W): first -> last, last -> first) of each triplet's
    end frames, or None for a model without one (``init: zero``)."""
    priors = []
    for first, _, last in tqdm(triplets, unit="triplet", desc="adapt: flow", disable=not progress, leave=False):
        x0, x1 = (torch.from_numpy(f).to(device).permute(2, 0, 1)[None].float() / 255.0 for f in (first, last))
        prior = model.flow_prior(x0, x1)
        if prior is None:
            return None
        priors.append(prior[0].cpu().numpy().astype(np.float16))
    return priors


def random_batch(triplets: list[Triplet], batch_size: int, crop: int, rng: np.random.Generator,
                 device: torch.device, priors: list[np.ndarray] | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(img0, target, img1, prior) float batches of random crops, randomly flipped and played
    backwards (the middle drawing is the middle either way). ``priors`` (one per triplet, see
    ``whole_frame_priors``) are cropped, mirrored (x displacements negated) and swapped with the
    frames; without them the returned prior is None and the model computes it on the crops."""
    samples, fields = [], []
    for _ in range(batch_size):
        i = rng.integers(len(triplets))
        triplet = triplets[i]
        h, w = triplet[0].shape[:2]
        ch, cw = min(crop, h), min(crop, w)
        y, x = rng.integers(h - ch + 1), rng.integers(w - cw + 1)
        frames = [f[y:y + ch, x:x + cw] for f in triplet]
        prior = None if priors is None else priors[i][:, y:y + ch, x:x + cw].astype(np.float32)
        if rng.random() < 0.5:
            frames = [f[:, ::-1] for f in frames]
            if prior is not None:
                prior = prior[:, :, ::-1] * np.array([-1, 1, -1, 1], np.float32)[:, None, None]
        if rng.random() < 0.5:
            frames = frames[::-1]
            if prior is not None:
                prior = np.concatenate((prior[2:], prior[:2]))
        samples.append(np.stack(frames))
        fields.append(prior)
    batch = torch.from_numpy(np.ascontiguousarray(np.stack(samples))).to(device)  # (B, 3, h, w, 3)
    batch = batch.permute(1, 0, 4, 2, 3).float().div_(255.0)
    prior = None if priors is None else torch.from_numpy(np.ascontiguousarray(np.stack(fields))).to(device)
    return batch[0], batch[1], batch[2], prior


@torch.no_grad()
def held_out_psnr(model: torch.nn.Module, triplets: list[Triplet], device: torch.device) -> float:
    """Mean PSNR (dB) of the model's middle frames on whole held-out triplets (NaN if none), one
    pass each: the check ranks two sets of weights, as the promotion gate does, and the model's
    mirrored passes would cost four times the budget here for the same ranking."""
    if not triplets:
        return math.nan
    scores = []
    for first, middle, last in triplets:
        x0, x1 = (torch.from_numpy(f).to(device).permute(2, 0, 1)[None].float() / 255.0 for f in (first, last))
        pred = model.inference(x0, x1, 0.5, flips=1)
        pred = pred.mul(255.0).round().clamp(0, 255)  # scored as the frame that would be written
        mse = ((pred[0].permute(1, 2, 0).cpu().double() - torch.from_numpy(middle).double()) ** 2).mean().item()
        scores.append(10 * math.log10(255.0**2 / max(mse, 1e-10)) if math.isfinite(mse) else math.nan)
    return float(np.mean(scores))
