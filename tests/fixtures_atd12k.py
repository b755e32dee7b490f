"""Builders for tiny ATD-12K-layout trees, good and broken, written by the tests themselves.

Each triplet is a flat-coloured cartoon-like pattern that frame3 shows translated by a known
integer offset (with wrap-around), so its exact flow is a constant: flow 1->3 = (dx, dy) and
flow 3->1 = (-dx, -dy) (warp(frame3, flow_13) == frame1).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

SPLIT_DIRS = {"train": "train_10k", "test": "test_2k_540p"}


@dataclass
class TripletSpec:
    name: str
    split: str
    shift: tuple[int, int]  # (dx, dy) from frame1 to frame3, in original pixels


def pattern(width: int, height: int, seed: int) -> np.ndarray:
    """uint8 RGB (H, W, 3): a few flat-colour rectangles and discs on a flat background."""
    rng = np.random.default_rng(seed)
    img = np.empty((height, width, 3), np.uint8)
    img[:] = rng.integers(40, 220, 3)
    for _ in range(4):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        if rng.random() < 0.5:
            cv2.rectangle(img, (x, y), (x + width // 3, y + height // 3), colour, -1)
        else:
            cv2.circle(img, (x, y), max(3, min(width, height) // 4), colour, -1)
    return img


def triplet_frames(width: int, height: int, seed: int, shift: tuple[int, int]) -> list[np.ndarray]:
    dx, dy = shift
    f1 = pattern(width, height, seed)
    # frame3(p + d) = frame1(p): frame3 is frame1 rolled by d; frame2 halfway (rounded).
    f2 = np.roll(f1, (dy // 2, dx // 2), axis=(0, 1))
    f3 = np.roll(f1, (dy, dx), axis=(0, 1))
    return [f1, f2, f3]


def write_rgb(path: Path, img: np.ndarray, quality: int = 95) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if path.suffix == ".jpg" else []
    assert cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR), params)


def annotation(width: int, height: int, level: int = 1, motion: str = "translation") -> dict:
    return {
        "motion_RoI": {"x": width // 4, "y": height // 4, "width": width // 2, "height": height // 2},
        "level": level,
        "image_size": [width, height],
        "general_motion_type": motion,
        "behavior": "walking",
    }


def write_triplet(
    root: Path,
    spec: TripletSpec,
    size: tuple[int, int],
    seed: int,
    gt_flow: bool = True,
    sgm_flow: bool = False,
    extra_times: Sequence[float] = (),
    level: int = 1,
) -> None:
    w, h = size
    split_dir = SPLIT_DIRS[spec.split]
    ext = ".jpg" if spec.split == "train" else ".png"
    frames = triplet_frames(w, h, seed, spec.shift)
    for k, img in enumerate(frames, start=1):
        write_rgb(root / split_dir / spec.name / f"frame{k}{ext}", img)
    dx, dy = spec.shift
    flow13 = np.stack([np.full((h, w), dx, np.float32), np.full((h, w), dy, np.float32)])
    if gt_flow:
        d = root / "gt_flows" / split_dir / spec.name
        d.mkdir(parents=True, exist_ok=True)
        np.save(d / "flo13.npy", flow13)
        np.save(d / "flo31.npy", -flow13)
    if spec.split == "test":
        d = root / "test_2k_annotations" / spec.name
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{spec.name}.json").write_text(json.dumps(annotation(w, h, level=level)))
        if sgm_flow:
            d = root / "test_2k_pre_calc_sgm_flows" / spec.name
            d.mkdir(parents=True, exist_ok=True)
            np.save(d / "guide_flo13.npy", flow13)
            np.save(d / "guide_flo31.npy", -flow13)
    for t in extra_times:
        write_rgb(root / "extra_frames" / split_dir / spec.name / f"t{t:.3f}.png", frames[1])


def make_atd12k_tree(
    root: Path,
    n_train_clips: int = 4,
    n_test: int = 3,
    triplets_per_clip: int = 2,
    size: tuple[int, int] = (48, 32),
    gt_flow: bool = True,
    sgm_flow: bool = False,
    extra_times: Sequence[float] = (),
    seed: int = 0,
) -> list[TripletSpec]:
    """Write a tiny ATD-12K tree under ``root``; returns what was written, in scan order."""
    rng = np.random.default_rng(seed)
    specs: list[TripletSpec] = []
    for c in range(n_train_clips):
        studio = "Japan" if c % 2 == 0 else "Disney"
        for k in range(triplets_per_clip):
            specs.append(TripletSpec(f"{studio}_v{c}_{c}_{100 * c + 10 * k:06d}_s1", "train", (0, 0)))
    for k in range(n_test):
        specs.append(TripletSpec(f"Japan_v9_{k}_{k:06d}_s2", "test", (0, 0)))
    for i, spec in enumerate(specs):
        spec.shift = (int(rng.integers(-4, 5)), int(rng.integers(-3, 4)))
        write_triplet(root, spec, size, seed * 1000 + i, gt_flow, sgm_flow, extra_times, level=i % 3)
    return sorted(specs, key=lambda s: (["train", "test"].index(s.split), s.name))


def make_tiny_store(root: Path, size: tuple[int, int] = (64, 48)):
    """A tiny ATD-12K tree under ``root`` (1 train clip, 3 test triplets) ingested into
    ``root/triplets.h5``; returns the opened TripletStore."""
    from animvfi_pipeline.data.atd12k import scan_atd12k
    from animvfi_pipeline.data.h5store import IngestionConfig, TripletStore, write_triplets_h5

    make_atd12k_tree(root, n_train_clips=1, n_test=3, triplets_per_clip=1, size=size)
    path = root / "triplets.h5"
    write_triplets_h5(path, scan_atd12k(root), IngestionConfig(size=size, workers=0), progress=False)
    return TripletStore(path)


# --------------------------------------------------------------------------- breaking things


def frame_path(root: Path, spec: TripletSpec, k: int) -> Path:
    ext = ".jpg" if spec.split == "train" else ".png"
    return root / SPLIT_DIRS[spec.split] / spec.name / f"frame{k}{ext}"


def annotation_path(root: Path, spec: TripletSpec) -> Path:
    return root / "test_2k_annotations" / spec.name / f"{spec.name}.json"


def gt_flow_path(root: Path, spec: TripletSpec, which: str = "flo13") -> Path:
    return root / "gt_flows" / SPLIT_DIRS[spec.split] / spec.name / f"{which}.npy"


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def rewrite_frame(path: Path, img: np.ndarray) -> Path:
    """Replace a frame by ``img`` (gray 2-D, BGRA, uint16...: whatever PNG holds); returns its path.

    A JPEG frame is replaced by a PNG of the same stem, which the reader accepts as well.
    """
    target = path.with_suffix(".png")
    if target != path:
        path.unlink()
    assert cv2.imwrite(str(target), img)
    return target
