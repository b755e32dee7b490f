"""Interpolate a whole clip: analyse it, plan the output timeline, render it frame by frame.

The work is split so that each part can be tested alone:

- an **interpolator** ``(img0, img1, ts) -> [frame at t for t in ts]`` on uint8 RGB frames: the
  trained model (:class:`ModelInterpolator`), the classical DIS-flow baseline
  (:func:`classical_interpolator`), or anything a test supplies;
- :func:`interpolate_clip` reads the input twice, never holding more than a few frames: a first
  pass finds cuts and held drawings on thumbnails (and proves the input decodes before anything is
  written), a second pass renders the timeline of :func:`schedule.iter_plan` through the
  interpolator into a writer that only becomes visible under the output name when complete.
"""
from __future__ import annotations

import dataclasses

import logging
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable, Sequence

import av
import numpy as np
import torch
from tqdm import tqdm

from animvfi_pipeline.errors import DataError
from animvfi_pipeline.inference import schedule
from animvfi_pipeline.inference.scenes import (
    DEFAULT_DUP_THRESHOLD,
    DEFAULT_SCENE_THRESHOLD,
    analyse_clip,
)
from animvfi_pipeline.inference.video_io import (
    ClipInfo,
    FolderWriter,
    OutputError,
    VideoSettings,
    VideoWriter,
    atomic_output,
    check_output_location,
    is_folder_output,
    probe,
    read_frames,
)

log = logging.getLogger(__name__)

Interpolator = Callable[[np.ndarray, np.ndarray, Sequence[float]], list[np.ndarray]]


@dataclass
class InterpolateConfig:
    """Everything about a run except the interpolator. Exactly one of factor / fps is used."""

    factor: int = 2
    fps: Fraction | None = None  # target rate; overrides factor
    scene_threshold: float = DEFAULT_SCENE_THRESHOLD
    dup_threshold: float = DEFAULT_DUP_THRESHOLD
    dedup: bool = False
    max_hold: int = 3
    folder_fps: Fraction = Fraction(24)  # rate of an input folder of frames
    video: VideoSettings = field(default_factory=VideoSettings)
    overwrite: bool = False
    progress: bool = True


@dataclass
class InterpolateResult:
    output: Path
    n_source: int
    n_output: int
    fps_in: Fraction
    fps_out: Fraction
    cuts: list[int]
    duplicates: list[int]
    kinds: dict[str, int]  # output frames per schedule kind (source, interpolated, hold, cut)
    seconds: float


def interpolate_clip(source: str | Path, output: str | Path, interpolator: Interpolator,
                     config: InterpolateConfig | None = None) -> InterpolateResult:
    """Read ``source`` (video file or frame folder), write the interpolated clip to ``output``.

    Raises DataError (bad input) or OutputError (output cannot be written); in either case, and
    on KeyboardInterrupt, nothing is left under ``output``.
    """
    cfg = config or InterpolateConfig()
    if cfg.fps is None and cfg.factor < 1:
        raise ValueError(f"factor must be >= 1, got {cfg.factor}")
    started = time.perf_counter()
    source, output = Path(source), Path(output)
    info = probe(source, cfg.folder_fps)
    if output.resolve() == source.resolve():
        raise OutputError(output, "is the input; choose another output")
    check_output_location(output, cfg.overwrite)

    analysis = analyse_clip(info, cfg.progress)
    n = analysis.n_frames
    if n < 2:
        raise DataError(source, f"has {n} frame{'s' if n != 1 else ''}; at least two are needed to interpolate")
    fps_out = cfg.fps if cfg.fps is not None else info.fps * cfg.factor
    cuts = analysis.cuts(cfg.scene_threshold, cfg.dup_threshold)
    duplicates = analysis.duplicates(cfg.dup_threshold)
    n_out = schedule.output_count(n, info.fps, fps_out)
    plan = schedule.iter_plan(n, info.fps, fps_out, cuts=cuts, duplicates=duplicates, dedup=cfg.dedup,
                              max_hold=cfg.max_hold)
    _log_plan(info, n, n_out, fps_out, cuts, duplicates, cfg)

    with atomic_output(output, cfg.overwrite) as tmp:
        writer = _open_writer(output, tmp, info, fps_out, cfg)
        with writer, tqdm(total=n_out, unit="frame", desc="interpolating", disable=not cfg.progress,
                          dynamic_ncols=True) as bar:
            try:
                kinds = render(plan, read_frames(info), interpolator, writer.write, on_frame=bar.update,
                               source_name=info.path)
            except av.FFmpegError as exc:  # the reader raises DataError; this is the encoder or muxer
                raise OutputError(output, f"could not be encoded ({exc})") from None
    seconds = time.perf_counter() - started
    log.debug("wrote %s: %d frames in %.1f s", output, n_out, seconds)
    return InterpolateResult(output, n, n_out, info.fps, fps_out, cuts, duplicates, dict(kinds), seconds)


def _open_writer(output: Path, tmp: Path, info: ClipInfo, fps_out: Fraction, cfg: InterpolateConfig):
    if is_folder_output(output):
        return FolderWriter(tmp)
    try:
        return VideoWriter(tmp, fps_out, info.width, info.height, cfg.video, input_codec=info.codec,
                           audio_from=info.path if info.has_audio else None, audio_offset=info.start_time)
    except (av.FFmpegError, ValueError) as exc:  # e.g. a codec the container cannot hold
        raise OutputError(output, f"cannot be encoded ({exc})") from None


def render(plan: Iterable[schedule.OutputFrame], frames: Iterable[np.ndarray], interpolator: Interpolator,
           write: Callable[[np.ndarray], None], on_frame: Callable[[], None] | None = None,
           source_name: str | Path = "input") -> Counter:
    """Second pass: produce every planned frame in order and hand it to ``write``.

    Source frames are decoded in order and kept only while the plan still asks for them: the
    current pair at most, since frames skipped on the way to a later one are never asked for
    again (see :func:`schedule.iter_plan`). Consecutive in-betweens of one pair go to the
    interpolator in one call, so it can batch them. Returns the number of frames of each kind.
    """
    cache: dict[int, np.ndarray] = {}
    source = iter(frames)
    next_index = 0

    def get(i: int) -> np.ndarray:
        nonlocal next_index
        while i not in cache:
            if i < next_index:
                raise RuntimeError(f"the plan asked for source frame {i} after it was released")
            frame = next(source, None)
            if frame is None:
                raise DataError(source_name, f"ended before frame {i} on the second read")
            if next_index == i:
                cache[i] = frame
            next_index += 1
        return cache[i]

    kinds: Counter = Counter()
    plan = iter(plan)
    pending = next(plan, None)
    while pending is not None:
        f, pending = pending, next(plan, None)
        group = [f]
        if f.is_copy:
            results = [get(f.src0)]
        else:
            while pending is not None and not pending.is_copy and (pending.src0, pending.src1) == (f.src0, f.src1):
                group.append(pending)
                pending = next(plan, None)
            img0, img1 = get(f.src0), get(f.src1)
            results = interpolator(img0, img1, [g.t for g in group])
            if len(results) != len(group) or any(r.shape != img0.shape or r.dtype != np.uint8 for r in results):
                raise RuntimeError("interpolator must return one uint8 frame of the input's shape per t")
        for g, frame in zip(group, results):
            write(frame)
            kinds[g.kind] += 1
            if on_frame is not None:
                on_frame()
        keep_from = pending.src0 if pending is not None else next_index
        for k in [k for k in cache if k < keep_from]:
            del cache[k]
    return kinds


def _log_plan(info: ClipInfo, n: int, n_out: int, fps_out: Fraction, cuts: list[int], duplicates: list[int],
              cfg: InterpolateConfig) -> None:
    log.info("%s: %d frames, %dx%d at %.3f fps -> %d frames at %.3f fps", info.path, n, info.width,
             info.height, float(info.fps), n_out, float(fps_out))
    if cuts:
        shown = ", ".join(str(c) for c in cuts[:20]) + (" ..." if len(cuts) > 20 else "")
        log.info("%d scene cut(s), held not interpolated, before frame(s) %s", len(cuts), shown)
    if duplicates:
        step = schedule.usual_step([i for i in range(n) if i not in set(duplicates)], cuts, cfg.max_hold)
        timing = {1: "ones", 2: "twos", 3: "threes"}.get(step, f"{step}s")
        log.info("%d of %d frames repeat the previous drawing (mostly on %s)%s", len(duplicates), n, timing,
                 "; re-timing from the distinct drawings (--dedup)" if cfg.dedup else
                 "; pass --dedup to smooth anime drawn on twos/threes")


# --- interpolators -------------------------------------------------------------------------------


def to_tensor(img: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 (H, W, 3) -> float (1, 3, H, W) in [0, 1]."""
    # Move the uint8 pixels (a quarter of the float bytes) and convert on the device.
    return torch.from_numpy(np.ascontiguousarray(img)).to(device).permute(2, 0, 1)[None].float().div_(255.0)


def to_images(x: torch.Tensor) -> list[np.ndarray]:
    """float (B, 3, H, W) in [0, 1] -> list of contiguous uint8 (H, W, 3)."""
    x = x.float().mul(255.0).round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().cpu()
    return list(x.numpy())


@dataclass
class ModelSettings:
    """How the network is run. See docs/interpolate.md for when to change these."""

    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "fp32"  # fp32 | fp16 | bf16 (autocast; CUDA only)
    batch_size: int | None = None  # in-betweens per forward pass; None: 1 on CPU, 4 on CUDA
    flow_scale: float | None = None  # run the network at this scale; None: from max_side
    max_side: int = 2048  # with flow_scale None, shrink frames whose long side exceeds this
    tile: int = 0  # >0: process frames in tiles of this size (pixels) with overlap
    tile_overlap: int | None = None  # default: tile // 4
    flips: int | None = None  # mirrored passes averaged (1, 2, 4); None: the model's own flip_ensemble
    # DIS variants the flow prior is chosen among per pair (VFIConfig.flow_candidates); None: the
    # model's own; an empty list: its single dis_preset.
    flow_candidates: list[str] | None = None
    # How frames are sampled along the flows (VFIConfig.warp_mode: bilinear | bicubic); None: the model's own.
    warp_mode: str | None = None


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda asked for, but this PyTorch sees no CUDA GPU; use --device cpu")
    return device


class ModelInterpolator:
    """A VFIModel behind the :data:`Interpolator` interface, with the memory bounds.

    - ``flow_scale < 1``: the network runs on shrunk frames; its intermediate flows, fusion mask
      and residual are upsampled and the full-resolution frames are warped with them, so outlines
      stay sharp while memory and time fall with the square of the scale (RIFE's 4K advice).
    - ``tile``: frames are cut into overlapping tiles, each interpolated alone and feathered
      back together. Motion larger than the overlap is not seen across tiles, so prefer
      ``flow_scale`` and use tiles only when memory is still short.
    """

    def __init__(self, model: torch.nn.Module, settings: ModelSettings | None = None):
        self.settings = s = settings or ModelSettings()
        self.device = resolve_device(s.device)
        self.model = model.to(self.device).eval()
        # Several t of a pair in one pass share the pair's flow: ~15 % faster per in-between at
        # --factor 4 on CPU (960x540), at the cost of one synthesis pass of memory per t.
        self.batch_size = s.batch_size or 4
        if s.precision not in ("fp32", "fp16", "bf16"):
            raise ValueError(f"precision must be fp32, fp16 or bf16, got {s.precision!r}")
        self.autocast_dtype = None
        if s.precision != "fp32":
            if self.device.type == "cuda":
                self.autocast_dtype = torch.float16 if s.precision == "fp16" else torch.bfloat16
            else:
                log.warning("--precision %s only applies on CUDA; running fp32 on %s", s.precision, self.device)
        if s.flow_scale is not None and not 0 < s.flow_scale <= 1:
            raise ValueError(f"flow scale must be in (0, 1], got {s.flow_scale}")
        if s.tile and s.tile < 64:
            raise ValueError(f"tile must be at least 64 pixels, got {s.tile}")
        if s.flow_candidates is not None:  # a setting of the model itself: the interpolator owns it from here
            self.model.cfg = dataclasses.replace(self.model.cfg, flow_candidates=list(s.flow_candidates))
        if s.warp_mode is not None:  # likewise; replace() validates the name
            self.model.cfg = dataclasses.replace(self.model.cfg, warp_mode=s.warp_mode)

    def scale_for(self, height: int, width: int) -> float:
        if self.settings.flow_scale is not None:
            return self.settings.flow_scale
        return min(1.0, self.settings.max_side / max(height, width))

    def __call__(self, img0: np.ndarray, img1: np.ndarray, ts: Sequence[float]) -> list[np.ndarray]:
        x0, x1 = to_tensor(img0, self.device), to_tensor(img1, self.device)
        scale = self.scale_for(*img0.shape[:2])
        outputs = []
        for start in range(0, len(ts), self.batch_size):
            t = torch.tensor(ts[start:start + self.batch_size], dtype=torch.float32, device=self.device)
            with torch.inference_mode(), torch.autocast(self.device.type, dtype=self.autocast_dtype,
                                                        enabled=self.autocast_dtype is not None):
                # One pair, several t: VFIModel computes the pair's flow once for all of them.
                if self.settings.tile:
                    pred = tiled(lambda p, q: self._infer(p, q, t, scale), x0, x1, self.settings.tile,
                                 self.settings.tile_overlap)
                else:
                    pred = self._infer(x0, x1, t, scale)
            outputs.extend(to_images(pred))
        return outputs

    def _infer(self, img0: torch.Tensor, img1: torch.Tensor, t: torch.Tensor, scale: float) -> torch.Tensor:
        # Any model with inference(img0, img1, t) works at full scale with the model's own flips.
        extra = {} if self.settings.flips is None else {"flips": self.settings.flips}
        if scale < 1.0:
            extra["scale"] = scale
        return self.model.inference(img0, img1, t, **extra)


@torch.no_grad()
def tiled(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], img0: torch.Tensor, img1: torch.Tensor,
          tile: int, overlap: int | None = None) -> torch.Tensor:
    """``fn`` applied to overlapping ``tile`` x ``tile`` windows, blended with linear feathering.

    ``fn``'s output may have a larger batch than its inputs (one pair, several t)."""
    h, w = img0.shape[-2:]
    if h <= tile and w <= tile:
        return fn(img0, img1)
    overlap = tile // 4 if overlap is None else overlap
    if not 0 <= overlap < tile:
        raise ValueError(f"tile overlap must be in [0, {tile}), got {overlap}")
    out = None
    weight = torch.zeros((1, 1, h, w), dtype=torch.float32, device=img0.device)
    for y0 in _tile_starts(h, tile, overlap):
        for x0 in _tile_starts(w, tile, overlap):
            y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
            pred = fn(img0[..., y0:y1, x0:x1], img1[..., y0:y1, x0:x1]).float()
            if out is None:
                out = torch.zeros((*pred.shape[:2], h, w), dtype=torch.float32, device=img0.device)
            win = _feather(y1 - y0, overlap, y0 > 0, y1 < h, img0.device)[:, None] * \
                _feather(x1 - x0, overlap, x0 > 0, x1 < w, img0.device)[None, :]
            out[..., y0:y1, x0:x1] += pred * win
            weight[..., y0:y1, x0:x1] += win
    return out / weight


def _tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    if length <= tile:
        return [0]
    stride = tile - overlap
    count = math.ceil((length - tile) / stride) + 1
    return [min(k * stride, length - tile) for k in range(count)]


def _feather(n: int, overlap: int, ramp_start: bool, ramp_end: bool, device) -> torch.Tensor:
    """1-D weights: rising over ``overlap`` pixels at inner edges, flat elsewhere (never zero)."""
    wgt = torch.ones(n, device=device)
    if overlap > 0:
        ramp = torch.arange(1, overlap + 1, device=device, dtype=torch.float32) / (overlap + 1)
        k = min(overlap, n)
        if ramp_start:
            wgt[:k] = torch.minimum(wgt[:k], ramp[:k])
        if ramp_end:
            wgt[n - k:] = torch.minimum(wgt[n - k:], ramp[:k].flip(0))
    return wgt


def classical_interpolator(preset: str = "medium") -> Interpolator:
    """The no-training baseline (evaluation/baselines.py): OpenCV DIS flow both ways, computed
    once per pair, then warped and blended for each t. Fast, no model needed, softer results."""
    from animvfi_pipeline.evaluation.baselines import ClassicalFlowConfig, dis_flow, interpolate_with_flow

    cfg = ClassicalFlowConfig(preset=preset)

    def interpolate(img0: np.ndarray, img1: np.ndarray, ts: Sequence[float]) -> list[np.ndarray]:
        flow_01, flow_10 = dis_flow(img0, img1, preset), dis_flow(img1, img0, preset)
        return [np.clip(np.rint(interpolate_with_flow(img0, img1, flow_01, flow_10, t, cfg) * 255.0), 0, 255)
                .astype(np.uint8) for t in ts]

    return interpolate


def load_model_interpolator(source: str | Path, settings: ModelSettings | None = None) -> ModelInterpolator:
    """Load a trained ``vfi.pt`` or an MLflow model URI (CheckpointError naming it if it is not one
    of ours); ``tracking.model_source`` resolves both, as fine-tuning's ``init_from`` does."""
    settings = settings or ModelSettings()
    return ModelInterpolator(load_vfi_model_from(source, resolve_device(settings.device)), settings)


def load_vfi_model_from(source: str | Path, device: torch.device | str = "cpu") -> torch.nn.Module:
    """The VFIModel at ``source`` (a ``vfi.pt`` path or an MLflow URI), on ``device``, in eval mode."""
    from animvfi_pipeline.models.checkpoint import build_vfi_model
    from animvfi_pipeline.tracking.model_source import load_vfi_checkpoint

    return build_vfi_model(load_vfi_checkpoint(source), source=source).to(device).eval()
