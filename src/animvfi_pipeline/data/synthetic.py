"""Synthetic ATD-12K: cel-shaded cartoon clips with exact optical flow, written in the ATD-12K layout.

    from animvfi_pipeline.data.synthetic import SyntheticConfig, make_scene, write_synthetic_atd12k

    scene = make_scene(seed=3, width=256, height=144, level=2, motion_type="rotation")
    frame1, frame3 = scene.render(0.0), scene.render(1.0)
    flow_13 = scene.flow(0.0, 1.0)          # warp(frame3, flow_13) ~= frame1
    write_synthetic_atd12k("data/01_raw/atd12k_synthetic", SyntheticConfig())

The scenes live in synthetic_scene.py (layers, transforms, rendering, flow), synthetic_builder.py
(what a shot contains and how it moves) and synthetic_shapes.py (analytic shapes and paint).
See docs/synthetic_dataset.md.
"""
from __future__ import annotations

import json
import logging
import math
import multiprocessing
import os
import sys
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from animvfi_pipeline.data.synthetic_builder import LEVEL_BANDS, STYLE_FAMILIES, TIMINGS, make_scene
from animvfi_pipeline.data.synthetic_scene import (
    LEVEL_THRESHOLDS, MOTION_TYPES, CartoonScene, level_of,
)
from animvfi_pipeline.errors import DataError
from animvfi_pipeline.utils_io import atomic_path

__all__ = [
    "SyntheticConfig", "CartoonScene", "make_scene", "write_synthetic_atd12k", "level_of",
    "LEVEL_THRESHOLDS", "LEVEL_BANDS", "MOTION_TYPES", "SPEC_FILE", "GENERATOR_VERSION",
]

logger = logging.getLogger(__name__)

SPEC_FILE = "synthetic_spec.json"
# Bump when the pictures or flows for a given config change, so old datasets are regenerated.
GENERATOR_VERSION = 2
STUDIOS = ("Japan", "Disney")  # east / west, alternating clip by clip
CLIPS_PER_VIDEO = 3
# (split, directory, frame extension): train is JPEG like ATD-12K's train_10k, test is PNG.
SPLITS = (("train", "train_10k", ".jpg"), ("test", "test_2k_540p", ".png"))
# Same choice as data/h5store.py: workers start clean, and quickly after the first one.
_MP_CONTEXT = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


@dataclass
class SyntheticConfig:
    seed: int = 1234
    width: int = 256
    height: int = 144
    n_train: int = 240          # triplets in train_10k
    n_test: int = 60            # triplets in test_2k_540p
    triplets_per_clip: int = 4  # consecutive triplets sampled from one scene/clip (same clip key)
    extra_times: tuple[float, ...] = (0.25, 0.75)   # extra intermediate frames stored (may be empty)
    jpeg_quality: int = 95
    level_weights: tuple[float, float, float] = (0.3, 0.4, 0.3)
    workers: int = 2            # processes used to render; output must NOT depend on this
    timing: str = "linear"      # linear: frame2 is the midpoint of the motion; eased: random easing per window
    styles: tuple[str, ...] = ("cel", "paper", "cg")     # style families of the training clips
    unseen_styles: tuple[str, ...] = ("watercolor",)     # families training never sees: in val and test only
    n_unseen_val: int = 0       # triplets of unseen styles written to train_10k for ingestion to route to val
    unseen_test_share: float = 0.0  # share of test clips drawn in an unseen style

    def __post_init__(self):
        self.extra_times = tuple(float(t) for t in self.extra_times)
        self.level_weights = tuple(float(w) for w in self.level_weights)
        self.styles = tuple(str(v) for v in self.styles)
        self.unseen_styles = tuple(str(v) for v in self.unseen_styles)
        problems = []
        unknown = sorted(set(self.styles + self.unseen_styles) - set(STYLE_FAMILIES))
        if unknown:
            problems.append(f"unknown style families {unknown}; known: {sorted(STYLE_FAMILIES)}")
        if not self.styles:
            problems.append("styles must name at least one family for training")
        if set(self.styles) & set(self.unseen_styles):
            problems.append(f"a family cannot be both seen and unseen: {sorted(set(self.styles) & set(self.unseen_styles))}")
        if self.timing not in TIMINGS:
            problems.append(f"timing must be one of {TIMINGS}, got {self.timing!r}")
        if self.n_unseen_val < 0 or not 0.0 <= self.unseen_test_share <= 1.0:
            problems.append("n_unseen_val must be >= 0 and unseen_test_share in [0, 1]")
        if (self.n_unseen_val or self.unseen_test_share) and not self.unseen_styles:
            problems.append("n_unseen_val / unseen_test_share need at least one unseen style")
        if self.width < 8 or self.height < 8:
            problems.append(f"width and height must be >= 8, got {self.width}x{self.height}")
        if self.n_train < 0 or self.n_test < 0:
            problems.append("n_train and n_test must be >= 0")
        if self.triplets_per_clip < 1:
            problems.append("triplets_per_clip must be >= 1")
        distinct = len(set(np.round(self.extra_times, 3))) == len(self.extra_times)
        if any(not 0.0 < t < 1.0 for t in self.extra_times) or not distinct:
            problems.append(f"extra_times must be distinct (to 3 decimals) and inside (0, 1), got {self.extra_times}")
        if not 1 <= self.jpeg_quality <= 100:
            problems.append(f"jpeg_quality must be in 1..100, got {self.jpeg_quality}")
        if len(self.level_weights) != 3 or min(self.level_weights) < 0 or sum(self.level_weights) <= 0:
            problems.append(f"level_weights must be three non-negative numbers, not all 0, got {self.level_weights}")
        if self.workers < 1:
            problems.append("workers must be >= 1")
        if problems:
            raise ValueError("invalid SyntheticConfig: " + "; ".join(problems))

    def spec(self) -> dict:
        """What synthetic_spec.json holds: the config (JSON types) and the generator version."""
        return json.loads(json.dumps({**asdict(self), "generator_version": GENERATOR_VERSION}))


@dataclass(frozen=True)
class _ClipJob:
    out: str            # dataset directory being written
    split: str
    split_dir: str
    ext: str
    index: int          # clip number over both splits: names and seeds come from it
    n_triplets: int
    seed: int           # master seed
    width: int
    height: int
    extra_times: tuple[float, ...]
    jpeg_quality: int
    level_weights: tuple[float, float, float]
    style: str
    timing: str


def clip_name(index: int, style: str = "v") -> str:
    """Clip key of clip ``index``: studio, video and clip number (``Japan_cel1_0``).

    The video id carries the style family (``cel1``, ``watercolor3``), where ATD-12K has ``v1``;
    ``data.atd12k.style_of`` reads it back.
    """
    return f"{STUDIOS[index % 2]}_{style}{index // (2 * CLIPS_PER_VIDEO) + 1}_{(index // 2) % CLIPS_PER_VIDEO}"


def write_synthetic_atd12k(root: str | Path, cfg: SyntheticConfig, progress: bool = True) -> Path:
    """Write a synthetic ATD-12K-layout dataset at ``root`` (see docs/architecture.md) and return it.

    Idempotent: an existing dataset with the same spec is left alone. A synthetic dataset with a
    different spec is replaced atomically. A folder that is not a synthetic dataset is never
    touched (DataError).
    """
    root = Path(root)
    spec = cfg.spec()
    if _is_up_to_date(root, spec):
        logger.info("%s: synthetic dataset already matches the config, nothing to do", root)
        return root
    jobs = _plan(root, cfg)
    n_total = cfg.n_train + cfg.n_unseen_val + cfg.n_test
    records = []
    with atomic_path(root) as tmp:
        tmp.mkdir(parents=True)
        for _, split_dir, _ in SPLITS:
            (tmp / split_dir).mkdir()
        jobs = [_ClipJob(**{**asdict(j), "out": str(tmp)}) for j in jobs]
        with tqdm(total=n_total, desc="synthetic ATD-12K", unit="triplet", disable=not progress) as bar:
            if cfg.workers == 1 or len(jobs) <= 1 or not _workers_can_start():
                for job in jobs:
                    records += _render_clip(job)
                    bar.update(job.n_triplets)
            else:
                # Not fork: the parent may hold threads (tqdm, torch, Kedro) that a fork copies badly.
                ctx = multiprocessing.get_context(_MP_CONTEXT)
                with ProcessPoolExecutor(max_workers=cfg.workers, mp_context=ctx) as pool:
                    for fut in as_completed([pool.submit(_render_clip, job) for job in jobs]):
                        done = fut.result()
                        records += done
                        bar.update(len(done))
        (tmp / SPEC_FILE).write_text(json.dumps(spec, indent=2) + "\n")
    _log_summary(root, records)
    return root


def _workers_can_start() -> bool:
    # Spawned and forkserver workers re-import the caller's main module; a script piped on stdin
    # has none to import, so render in this process instead of failing.
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    if main_file is not None and not os.path.exists(main_file):
        logger.info("main module %s cannot be re-imported by worker processes; rendering in-process", main_file)
        return False
    return True


def _is_up_to_date(root: Path, spec: dict) -> bool:
    if not root.exists():
        return False
    if not root.is_dir():
        raise DataError(root, "exists and is not a directory; refusing to replace it with a synthetic dataset")
    spec_path = root / SPEC_FILE
    if not spec_path.is_file():
        if any(root.iterdir()):
            raise DataError(root, f"exists and is not a synthetic dataset (no {SPEC_FILE}); refusing to overwrite it")
        return False  # an empty folder holds nothing to protect
    try:
        old = json.loads(spec_path.read_text())
    except (OSError, ValueError) as exc:
        logger.warning("%s: unreadable (%s); regenerating the synthetic dataset", spec_path, exc)
        return False
    # The number of workers does not change a single byte of the output.
    same = isinstance(old, dict) and {k: v for k, v in old.items() if k != "workers"} == \
        {k: v for k, v in spec.items() if k != "workers"}
    if not same:
        logger.info("%s: synthetic dataset has a different spec; regenerating", root)
    return same


def _plan(root: Path, cfg: SyntheticConfig) -> list[_ClipJob]:
    """Clips in order: training clips cycling through the seen styles, then unseen-style clips in
    train_10k (for the validation split), then test clips, of which about ``unseen_test_share``
    are unseen-style."""
    (train, train_dir, train_ext), (test, test_dir, test_ext) = SPLITS
    groups = [(train, train_dir, train_ext, cfg.n_train, lambda k: cfg.styles[k % len(cfg.styles)])]
    if cfg.n_unseen_val:
        groups.append((train, train_dir, train_ext, cfg.n_unseen_val,
                       lambda k: cfg.unseen_styles[k % len(cfg.unseen_styles)]))

    # Spread the unseen clips evenly through the test split (clip k is unseen when the running
    # share steps past a whole number); the seen ones cycle through the training styles.
    n_clips = -(-cfg.n_test // cfg.triplets_per_clip)
    unseen = [math.floor((k + 1) * cfg.unseen_test_share) > math.floor(k * cfg.unseen_test_share)
              for k in range(n_clips)]
    test_styles = [cfg.unseen_styles[sum(unseen[:k]) % len(cfg.unseen_styles)] if u
                   else cfg.styles[(k - sum(unseen[:k])) % len(cfg.styles)] for k, u in enumerate(unseen)]
    test_style = test_styles.__getitem__

    groups.append((test, test_dir, test_ext, cfg.n_test, test_style))
    jobs, index = [], 0
    for split, split_dir, ext, n, style_of_clip in groups:
        for k, start in enumerate(range(0, n, cfg.triplets_per_clip)):
            jobs.append(_ClipJob(str(root), split, split_dir, ext, index, min(cfg.triplets_per_clip, n - start),
                                 cfg.seed, cfg.width, cfg.height, cfg.extra_times, cfg.jpeg_quality,
                                 cfg.level_weights, style_of_clip(k), cfg.timing))
            index += 1
    return jobs


def _render_clip(job: _ClipJob) -> list[dict]:
    """Render one clip (its consecutive triplets) into ``job.out``; runs in a worker process."""
    cv2.setNumThreads(1)  # the pool already uses every core we were given
    # Everything random about a clip comes from (master seed, clip index): independent of workers.
    rng = np.random.default_rng(np.random.SeedSequence([job.seed, job.index]))
    weights = np.asarray(job.level_weights) / sum(job.level_weights)
    target = int(rng.choice(3, p=weights))
    motion = str(rng.choice(MOTION_TYPES))
    scene = make_scene(int(rng.integers(2**62)), job.width, job.height, level=target, motion_type=motion,
                       n_windows=job.n_triplets, style=job.style, timing=job.timing)
    out = Path(job.out)
    records = []
    for k in range(job.n_triplets):
        win = scene.window(k)
        name = f"{clip_name(job.index, job.style)}_{2 * k:06d}_s1"
        folder = out / job.split_dir / name
        folder.mkdir(parents=True, exist_ok=False)
        for i, t in enumerate((0.0, 0.5, 1.0), start=1):
            _write_image(folder / f"frame{i}{job.ext}", win.render(t), job.jpeg_quality)
        flows = out / "gt_flows" / job.split_dir / name
        flows.mkdir(parents=True)
        flo13, flo31 = win.flow(0.0, 1.0), win.flow(1.0, 0.0)
        np.save(flows / "flo13.npy", flo13)
        np.save(flows / "flo31.npy", flo31)
        if job.extra_times:
            extra = out / "extra_frames" / job.split_dir / name
            extra.mkdir(parents=True)
            for t in job.extra_times:
                _write_image(extra / f"t{t:.3f}.png", win.render(t), job.jpeg_quality)
        # The level is what the pixels show, not what was asked for.
        level = level_of(win.max_displacement(0.0, 1.0), job.width)
        if job.split == "test":
            x, y, w, h = win.motion_roi(0.0, 1.0)
            ann = {"motion_RoI": {"x": x, "y": y, "width": w, "height": h}, "level": level,
                   "image_size": [job.width, job.height], "general_motion_type": motion,
                   "behavior": scene.behavior}
            ann_dir = out / "test_2k_annotations" / name
            ann_dir.mkdir(parents=True)
            (ann_dir / f"{name}.json").write_text(json.dumps(ann, indent=2) + "\n")
        records.append({"name": name, "split": job.split, "level": level, "target_level": target,
                        "motion_type": motion, "style": job.style})
    return records


def _write_image(path: Path, rgb: np.ndarray, jpeg_quality: int) -> None:
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if path.suffix == ".jpg" else []
    ok, buf = cv2.imencode(path.suffix, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise OSError(f"{path}: OpenCV could not encode the frame")
    path.write_bytes(buf.tobytes())


def _log_summary(root: Path, records: list[dict]) -> None:
    for split in ("train", "test"):
        rows = [r for r in records if r["split"] == split]
        if rows:
            levels = Counter(r["level"] for r in rows)
            off = sum(r["level"] != r["target_level"] for r in rows)
            logger.info("%s: %d %s triplets, levels easy/medium/hard = %d/%d/%d (%d differ from their target)",
                        root, len(rows), split, levels[0], levels[1], levels[2], off)
