"""Any clip becomes training data: a folder of videos and frame folders -> the HDF5 triplet store.

Two passes over each clip, both streaming (one frame in memory at a time, plus the few drawings
a pending triplet still needs):

1. **Analyse** at thumbnail size (inference/scenes.py): cuts, held drawings, brightness. This also
   proves the whole file decodes before any of its triplets is stored.
2. **Cut triplets** (data/video_triplets.py) at the stored size; worker processes compute the
   pseudo flow (OpenCV DIS), apply the drop rules and compress the chunks, and the single writer
   of data/h5store.py copies them into the same store format as ATD-12K's, with each triplet's
   provenance (file, shot, frame indices, times) in the metadata table.

Usage and thresholds: docs/video.md.
"""
from __future__ import annotations

import contextlib
import json
import logging
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import h5py
import numpy as np
from tqdm.auto import tqdm

from animvfi_pipeline.data.flow import dis_flow_pair
from animvfi_pipeline.data.h5store import (
    LIBVER,
    SPLITS,
    IngestionConfig,
    IngestionResult,
    _Layout,
    _StoreWriter,
    _encode_chunks,
    ordered_pool_map,
    store_attrs,
    to_float16,
)
from animvfi_pipeline.data.video_source import VideoFolder
from animvfi_pipeline.data.video_triplets import (
    DROP_REASONS,
    ClipPlan,
    PlannedTriplet,
    assign_shot_splits,
    motion_verdict,
    plan_clip,
)
from animvfi_pipeline.errors import DataError
from animvfi_pipeline.inference.scenes import DEFAULT_DUP_THRESHOLD, DEFAULT_SCENE_THRESHOLD, analyse_clip
from animvfi_pipeline.inference.video_io import probe, read_frames
from animvfi_pipeline.utils_io import atomic_path

logger = logging.getLogger(__name__)

VIDEO_FLOW_SOURCES = ("dis", "none")  # videos have no ground-truth flow: DIS pseudo flow or none


@dataclass
class VideoIngestionConfig:
    """How to turn a folder of clips into a store (the `ingestion:` parameters of conf/video)."""

    size: tuple[int, int]  # (W, H) of every stored frame; clips of another aspect are stretched
    gaps: tuple[int, ...] = (1,)  # 1 = three consecutive drawings; 2 = every other drawing (larger motion)
    scene_threshold: float = DEFAULT_SCENE_THRESHOLD
    dup_threshold: float = DEFAULT_DUP_THRESHOLD
    flash_threshold: float = 0.08  # brightness off the ends' straight line (0-1)
    min_motion: float = 1.0  # pixels at the stored size; below: static
    max_motion: float = 0.25  # share of the stored width; above: too much motion
    val_fraction: float = 0.1  # share of shots (drawn per shot) for validation
    test_fraction: float = 0.1
    val_files: tuple[str, ...] = ()  # fnmatch patterns of relative paths that go to val whole
    test_files: tuple[str, ...] = ()
    seed: int = 0
    folder_fps: float = 24.0  # frame rate of folders of frames (for the timestamps)
    flow_source: str = "dis"  # dis | none
    on_error: str = "fail"
    workers: int = 2
    compression: str | None = "blosc-lz4"
    dis_preset: str = "medium"
    chunk_tile: int | None = 128
    dis_prior: str | None = None

    def __post_init__(self) -> None:
        self.gaps = tuple(int(g) for g in self.gaps)
        self.val_files, self.test_files = tuple(self.val_files or ()), tuple(self.test_files or ())
        if not self.gaps or min(self.gaps) < 1:
            raise ValueError(f"gaps must be positive integers, got {list(self.gaps)}")
        if self.flow_source not in VIDEO_FLOW_SOURCES:
            raise ValueError(f"flow_source must be one of {VIDEO_FLOW_SOURCES} for videos, got {self.flow_source!r}")
        if not (0 <= self.test_fraction and 0 <= self.val_fraction and self.val_fraction + self.test_fraction < 1):
            raise ValueError(f"val_fraction + test_fraction must be in [0, 1), got {self.val_fraction} + "
                             f"{self.test_fraction}")
        if self.min_motion < 0 or not 0 < self.max_motion <= 1:
            raise ValueError(f"min_motion must be >= 0 and max_motion in (0, 1], got {self.min_motion}, {self.max_motion}")
        self.size = self.storage().size  # the store's own checks: size, on_error, compression, presets

    def storage(self) -> IngestionConfig:
        """The settings the store writer shares with ATD-12K ingestion (validated there)."""
        return IngestionConfig(size=self.size, flow_source=self.flow_source, val_fraction=self.val_fraction,
                               seed=self.seed, on_error=self.on_error, workers=self.workers,
                               compression=self.compression, extra_times=(), dis_preset=self.dis_preset,
                               chunk_tile=self.chunk_tile, dis_prior=self.dis_prior)


@dataclass
class VideoIngestionPlan:
    """What to ingest and how: a node builds it, the TripletStoreDataset carries it out."""

    folder: VideoFolder
    config: VideoIngestionConfig
    progress: bool = True

    def write(self, path: str | Path) -> IngestionResult:
        return write_video_triplets_h5(path, self.folder, self.config, progress=self.progress)


@dataclass
class _Skips:
    """Bad clips: the first raises with ``fail``; with ``skip`` each is listed with its reason."""

    on_error: str
    items: list[dict[str, str]] = field(default_factory=list)

    def add(self, rel: str, exc: DataError) -> None:
        if self.on_error == "fail":
            raise exc
        logger.warning("Skipping clip %s: %s", rel, exc)
        self.items.append({"name": rel, "path": exc.path, "reason": exc.problem})


def write_video_triplets_h5(path: str | Path, folder: VideoFolder, config: VideoIngestionConfig, *,
                            progress: bool = True) -> IngestionResult:
    """Analyse every clip of ``folder``, then stream its triplets into a store at ``path``, atomically.

    A bad clip (corrupt, truncated, no video stream, undecodable codec, frames of mixed sizes,
    gone while read) raises DataError naming it with ``on_error="fail"`` (nothing is written under
    ``path``), or is left out whole and listed in the store's ``skipped`` with ``"skip"``. The same
    folder and config give the same store content on every run.
    """
    path, cfg = Path(path), config
    started = time.perf_counter()
    if not folder.clips:
        raise DataError(folder.root, "holds no videos or folders of frames")
    skips = _Skips(cfg.on_error)
    plans = _analyse_all(folder, cfg, skips, progress)
    assign_shot_splits(plans, cfg.val_fraction, cfg.test_fraction, cfg.seed, cfg.val_files, cfg.test_files)
    n_candidates = sum(len(p.triplets) for p in plans)
    if n_candidates == 0:
        raise DataError(folder.root, f"no clip has three distinct drawings in a shot ({len(folder.clips)} clips, "
                                     f"{len(skips.items)} bad); nothing to store")
    storage = cfg.storage()
    layout = _Layout.make(cfg.size, 0, cfg.flow_source != "none", cfg.compression, tile=cfg.chunk_tile,
                          with_prior=cfg.dis_prior is not None)
    verdict_args = dict(flow_source=cfg.flow_source, dis_preset=cfg.dis_preset, dis_prior=cfg.dis_prior,
                        scene_threshold=cfg.scene_threshold, min_motion=cfg.min_motion, max_motion=cfg.max_motion)
    logger.info("Ingesting up to %d triplets from %d clips of %s into %s at %dx%d (%d workers)",
                n_candidates, len(plans), folder.root, path, cfg.size[0], cfg.size[1], cfg.workers)
    stream = ordered_pool_map(_triplet_for_store, _decoded_triplets(plans, cfg.size, cfg.flow_source), cfg.workers, layout,
                              verdict_args)
    dropped: Counter = Counter({(p.rel, r): n for p in plans for r, n in p.dropped.items()})
    with atomic_path(path) as tmp, h5py.File(tmp, "w", libver=LIBVER) as f, contextlib.closing(stream):
        writer = _StoreWriter(f, n_candidates, layout)
        clip_start: dict[str, int] = {}
        for status, payload in tqdm(stream, total=n_candidates, disable=not progress, desc="ingest", unit="triplet"):
            if status == "ok":
                meta, chunks = payload
                split = meta.pop("split")
                clip_start.setdefault(meta["source_file"], writer.n_written)
                writer.append(meta, chunks, split)
            elif status == "dropped":
                dropped[payload] += 1
            else:  # the clip failed in the second pass (changed or vanished since the first)
                rel, bad_path, problem = payload
                skips.add(rel, DataError(bad_path, problem))
                writer.rollback(clip_start.get(rel, writer.n_written))
                for key in [k for k in dropped if k[0] == rel]:
                    del dropped[key]
        if writer.n_written == 0:
            raise DataError(folder.root, f"all {n_candidates} candidate triplets were dropped or bad; nothing "
                                         f"to store (see the drop rules in docs/video.md)")
        totals = {r: sum(n for (_, reason), n in dropped.items() if reason == r) for r in DROP_REASONS}
        config_json = {**asdict(cfg), "kind": "video"}
        if cfg.dis_prior is not None:
            writer.datasets["prior"].attrs["dis_preset"] = cfg.dis_prior
        attrs = store_attrs(storage.size, (), folder.root, skips.items, config_json)
        writer.finish({**attrs, "dropped": json.dumps(totals, sort_keys=True)})
        counts = {s: sum(1 for r in writer.rows if r["split"] == s) for s in SPLITS}
    result = IngestionResult(path, writer.n_written, counts, skips.items, time.perf_counter() - started)
    logger.info("Wrote %s: %d triplets (train %d, val %d, test %d) from %d clips; dropped %s; %d clips skipped; "
                "%.1f s", path, result.n_triplets, counts["train"], counts["val"], counts["test"], len(plans),
                totals, len(skips.items), result.seconds)
    return result


def _analyse_all(folder: VideoFolder, cfg: VideoIngestionConfig, skips: _Skips, progress: bool) -> list[ClipPlan]:
    """First pass over every clip; a clip that does not decode to the end is bad as a whole."""
    plans = []
    for clip in tqdm(folder.clips, disable=not progress, desc="analyse", unit="clip"):
        rel = folder.relative(clip)
        try:
            info = probe(clip, cfg.folder_fps)
            analysis = analyse_clip(info)
        except DataError as exc:
            skips.add(rel, exc)
            continue
        plan = plan_clip(rel, info, analysis, cfg.gaps, cfg.scene_threshold, cfg.dup_threshold, cfg.flash_threshold)
        logger.info("%s: %d frames, %d shots, %d candidate triplets", rel, analysis.n_frames, plan.n_shots,
                    len(plan.triplets))
        plans.append(plan)
    return plans


def _decoded_triplets(plans: Sequence[ClipPlan], size: tuple[int, int], flow_source: str) -> Iterator[tuple[str, Any]]:
    """Second pass: ("triplet", (meta, frames)) for every planned triplet, as soon as its last
    frame is decoded, or ("bad", (rel, path, problem)) when a clip stops decoding.

    Only frames a pending triplet still needs are kept: at most ``2 * max(gaps) + 1`` drawings
    (plus their holds), whatever the clip's length.
    """
    for plan in plans:
        if not plan.triplets:
            continue
        needed = {i for t in plan.triplets for i in t.frames}
        triplets = plan.triplets
        # first_needed[k]: the earliest frame triplets k, k + 1, ... still use (gap-2 triplets
        # that end later can start earlier than the next one to emit).
        first_needed = np.minimum.accumulate([t.frames[0] for t in triplets][::-1])[::-1]
        kept: dict[int, np.ndarray] = {}
        k = n_decoded = 0
        try:
            for i, frame in enumerate(read_frames(probe(plan.info.path, plan.info.fps), size=size)):
                n_decoded = i + 1
                if i in needed:
                    kept[i] = frame
                while k < len(triplets) and triplets[k].frames[2] == i:
                    yield "triplet", (_meta(plan, triplets[k], flow_source), np.stack([kept[j] for j in triplets[k].frames]))
                    k += 1
                if k == len(triplets):
                    break
                for j in [j for j in kept if j < first_needed[k]]:
                    del kept[j]
            if k < len(triplets):
                raise DataError(plan.info.path, f"decoded {n_decoded} frames in the second pass, but "
                                                f"{triplets[k].frames[2] + 1} or more in the first (did the file change?)")
        except DataError as exc:  # sent as strings: a DataError does not survive pickling to a worker
            yield "bad", (plan.rel, exc.path, exc.problem)


def _meta(plan: ClipPlan, triplet: PlannedTriplet, flow_source: str) -> dict[str, Any]:
    a, b, c = triplet.frames
    return {
        "name": f"{plan.rel}:shot{triplet.shot:03d}:{a:06d}-{b:06d}-{c:06d}",
        "clip": f"{plan.rel}:shot{triplet.shot:03d}",  # the unit of the splits, as ATD-12K's clips
        "split": plan.shot_splits[triplet.shot],
        "level": -1,
        "roi": (-1, -1, -1, -1),
        "motion_type": "unknown",
        "behavior": "",
        "style": "",
        "flow_source": flow_source,
        "orig_width": plan.info.width,
        "orig_height": plan.info.height,
        "source_file": plan.rel,
        "shot": triplet.shot,
        "gap": triplet.gap,
        "frame_index": triplet.frames,
        "frame_time": tuple(round(plan.timestamp(i), 6) for i in triplet.frames),
    }


def _triplet_for_store(item: tuple[str, Any], layout: _Layout, verdict_args: dict[str, Any]) -> tuple[str, Any]:
    """Worker body: ("ok", (meta, chunks)), ("dropped", (clip, reason)) or ("bad", (clip, error))."""
    kind, payload = item
    if kind == "bad":
        return item
    meta, frames = payload
    v = verdict_args
    h, w = frames.shape[1:3]
    pair = flows = None
    if v["flow_source"] == "dis":
        # Pseudo flow for flow pretraining: DIS both ways between the stored frame1 and frame3.
        pair = dis_flow_pair(frames[0], frames[2], v["dis_preset"])
        flows = pair.reshape(2, 2, h, w)
    reason = motion_verdict(frames, None if flows is None else flows[0], v["scene_threshold"], v["min_motion"],
                            v["max_motion"])
    if reason is not None:
        return "dropped", (meta["source_file"], reason)
    arrays: dict[str, np.ndarray] = {"frames": frames}
    if flows is not None:
        arrays["flows"] = to_float16(flows)
    if v["dis_prior"] is not None:
        # The flow net's prior, as FlowNet.prior computes it on the whole stored frames; it is the
        # pseudo flow itself when both use the same preset (DIS runs each direction on its own).
        same = pair is not None and v["dis_prior"] == v["dis_preset"]
        arrays["prior"] = to_float16(pair if same else dis_flow_pair(frames[0], frames[2], v["dis_prior"]))
    return "ok", (meta, _encode_chunks(layout, arrays))
