"""ATD-12K layout reader: find triplets, validate them, load them resized with their flows.

The layout (real data and the synthetic generator alike) is described in docs/architecture.md.
`scan_atd12k` only checks the dataset as a whole (root, split folders, not empty) and never opens
an image, so one bad triplet cannot stop a scan; `load_triplet` validates one triplet and raises
`DataError` naming the offending file, which lets the ingestion decide to fail or to skip it.
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from animvfi_pipeline.data.flow import DIS_PRESETS, dis_flow, resize_flow
from animvfi_pipeline.errors import DataError

logger = logging.getLogger(__name__)

SPLIT_DIRS = {"train": "train_10k", "test": "test_2k_540p"}
ANNOTATION_DIR = "test_2k_annotations"
SGM_FLOW_DIR = "test_2k_pre_calc_sgm_flows"
GT_FLOW_DIR = "gt_flows"
EXTRA_FRAME_DIR = "extra_frames"
FRAME_EXTENSIONS = (".png", ".jpg", ".jpeg")
# Real ATD-12K: train frames are JPEG, test frames PNG; used to name a frame that is missing.
DEFAULT_FRAME_EXT = {"train": ".jpg", "test": ".png"}
FLOW_SOURCES = ("auto", "gt", "sgm", "dis", "none")
IMAGE_MODES = ("convert", "refuse")
MOTION_TYPES = ("translation", "rotation", "scaling", "deformation")
_EXTRA_NAME = re.compile(r"^t(\d+(?:\.\d+)?)$")


def clip_key(name: str) -> str:
    """The shot a triplet comes from: its name without the last two ``_`` fields.

    ``Japan_v2_2_062266_s2`` -> ``Japan_v2_2``. Names with fewer fields are their own clip.
    """
    parts = name.split("_")
    return "_".join(parts[:-2]) if len(parts) > 2 else name


_SYNTHETIC_VIDEO = re.compile(r"^([a-z]+)\d+$")


def style_of(name: str) -> str:
    """The style family in a synthetic triplet's name (``Japan_paper2_0_000004_s1`` -> ``paper``).

    The generator writes the family into the video id where ATD-12K has ``v<k>``; real names
    (``Disney_v4_0_000024_s2``) have no family and give ``""``.
    """
    parts = name.split("_")
    match = _SYNTHETIC_VIDEO.match(parts[1]) if len(parts) > 2 else None
    return match.group(1) if match and match.group(1) != "v" else ""


def time_key(t: float) -> float:
    """Times are matched to 3 decimals, the precision of the ``t0.250.png`` file names."""
    return round(float(t), 3)


@dataclass(frozen=True)
class TripletRecord:
    """Where one triplet's files are; nothing is read until `load_triplet`."""

    name: str
    split: str  # "train" | "test"
    dir: Path
    frame_paths: tuple[Path, Path, Path]
    annotation_path: Path | None = None
    gt_flow_paths: tuple[Path, Path] | None = None  # (flo13, flo31)
    sgm_flow_paths: tuple[Path, Path] | None = None  # (guide_flo13, guide_flo31)
    extra_frame_paths: dict[float, Path] = field(default_factory=dict)
    # Where the annotation should be; the test split requires it even when it is missing.
    expected_annotation_path: Path | None = None

    @property
    def clip(self) -> str:
        return clip_key(self.name)


@dataclass
class LoadedTriplet:
    """One triplet at the stored size, ready to be written to the HDF5 store."""

    name: str
    frames: np.ndarray  # uint8 (3, H, W, 3), RGB: frame1, frame2, frame3
    flows: np.ndarray | None  # float32 (2, 2, H, W): [0] = flow 1->3, [1] = flow 3->1
    flow_source: str  # "gt" | "sgm" | "dis" | "none"
    meta: dict[str, Any]
    extra_frames: np.ndarray  # uint8 (K, H, W, 3), in the order of the requested times
    extra_times: tuple[float, ...] = ()


@dataclass
class ATD12KSource:
    """A scanned ATD-12K tree: its root and its triplet records (no pixels)."""

    root: Path
    records: list[TripletRecord]

    @classmethod
    def scan(cls, root: str | Path, splits: Sequence[str] = ("train", "test")) -> ATD12KSource:
        return cls(Path(root), scan_atd12k(root, splits))

    def __len__(self) -> int:
        return len(self.records)


# --------------------------------------------------------------------------- scanning


def _find_frame(folder: Path, stem: str, split: str) -> Path:
    for ext in FRAME_EXTENSIONS:
        path = folder / f"{stem}{ext}"
        if path.is_file():
            return path
    return folder / f"{stem}{DEFAULT_FRAME_EXT[split]}"


def _pair_if_present(folder: Path, names: tuple[str, str]) -> tuple[Path, Path] | None:
    # A folder with only one of the two files is kept so that loading reports the missing one.
    if not folder.is_dir():
        return None
    return folder / names[0], folder / names[1]


def _extra_frames(folder: Path) -> dict[float, Path]:
    if not folder.is_dir():
        return {}
    found = {}
    for path in folder.iterdir():
        match = _EXTRA_NAME.match(path.stem)
        if match and path.suffix.lower() in FRAME_EXTENSIONS:
            found[time_key(float(match.group(1)))] = path
    return dict(sorted(found.items()))


def scan_atd12k(root: str | Path, splits: Sequence[str] = ("train", "test")) -> list[TripletRecord]:
    """List the triplets of an ATD-12K-layout tree, sorted by split then name.

    Raises DataError if the root or a requested split folder is missing, or if no triplet is
    found at all. Problems inside one triplet are left for `load_triplet` to report.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "ATD-12K root folder does not exist")
    records: list[TripletRecord] = []
    for split in splits:
        if split not in SPLIT_DIRS:
            raise ValueError(f"unknown split {split!r}; expected one of {sorted(SPLIT_DIRS)}")
        split_dir = SPLIT_DIRS[split]
        split_root = root / split_dir
        if not split_root.is_dir():
            raise DataError(split_root, f"split folder for {split!r} is missing (expected <root>/{split_dir}/<name>/)")
        folders = sorted(p for p in split_root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not folders:
            logger.warning("%s: split folder has no triplet folders", split_root)
        for folder in folders:
            name = folder.name
            annotation = root / ANNOTATION_DIR / name / f"{name}.json" if split == "test" else None
            records.append(
                TripletRecord(
                    name=name,
                    split=split,
                    dir=folder,
                    frame_paths=tuple(_find_frame(folder, f"frame{k}", split) for k in (1, 2, 3)),
                    annotation_path=annotation if annotation is not None and annotation.is_file() else None,
                    gt_flow_paths=_pair_if_present(root / GT_FLOW_DIR / split_dir / name, ("flo13.npy", "flo31.npy")),
                    sgm_flow_paths=_pair_if_present(
                        root / SGM_FLOW_DIR / name, ("guide_flo13.npy", "guide_flo31.npy")
                    )
                    if split == "test"
                    else None,
                    extra_frame_paths=_extra_frames(root / EXTRA_FRAME_DIR / split_dir / name),
                    expected_annotation_path=annotation,
                )
            )
    if not records:
        raise DataError(root, f"no triplets found in splits {list(splits)}")
    logger.info("%s: found %d triplets", root, len(records))
    return records


# --------------------------------------------------------------------------- images


def _is_complete_jpeg(data: np.ndarray) -> bool:
    # libjpeg decodes a truncated file without error (grey bottom rows, a warning on stderr),
    # so look for the end-of-image marker; some encoders pad a few bytes after it.
    tail = data[-64:].tobytes().rstrip(b"\x00\r\n ")
    return tail.endswith(b"\xff\xd9")


def read_image(path: Path, image_mode: str = "convert") -> np.ndarray:
    """Decode an image file to uint8 RGB (H, W, 3).

    image_mode "convert": gray becomes RGB, 16-bit is reduced to 8-bit, transparent pixels are
    composited on white (the colour of paper, and of most exported cels' background).
    image_mode "refuse": anything but 8-bit 3-channel colour raises DataError.
    """
    if image_mode not in IMAGE_MODES:
        raise ValueError(f"image_mode must be one of {IMAGE_MODES}, got {image_mode!r}")
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "image file is missing")
    data = np.fromfile(path, dtype=np.uint8)
    if data.size == 0:
        raise DataError(path, "image file is empty")
    if data[:2].tobytes() == b"\xff\xd8" and not _is_complete_jpeg(data):
        raise DataError(path, "JPEG is truncated (no end-of-image marker)")
    try:
        img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise DataError(path, "image cannot be decoded") from exc
    if img is None:
        raise DataError(path, "image is corrupt, truncated or not an image")

    channels = 1 if img.ndim == 2 else img.shape[2]
    if img.dtype != np.uint8 or channels != 3:
        kind = f"{img.dtype.itemsize * 8}-bit, {channels} channel(s)"
        if image_mode == "refuse":
            raise DataError(path, f"image is {kind}; expected 8-bit RGB (image_mode='refuse')")
        logger.debug("%s: converting %s image to 8-bit RGB", path, kind)
    if img.dtype == np.uint16:
        img = ((img.astype(np.uint32) + 128) // 257).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise DataError(path, f"unsupported pixel type {img.dtype}")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.shape[2] == 2:  # gray + alpha: spread gray over B, G, R and composite below
        img = np.dstack([img[..., 0], img[..., 0], img[..., 0], img[..., 1]])
    if img.shape[2] == 4:
        alpha = img[..., 3:4].astype(np.float32) / 255.0
        bgr = img[..., :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
        img = np.round(bgr).astype(np.uint8)
    if img.shape[2] != 3:
        raise DataError(path, f"image has {img.shape[2]} channels; expected 3")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def resize_image(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize uint8 (H, W, 3) to ``size = (W, H)``; area averaging when shrinking."""
    w, h = int(size[0]), int(size[1])
    if img.shape[1] == w and img.shape[0] == h:
        return img
    interp = cv2.INTER_AREA if w <= img.shape[1] and h <= img.shape[0] else cv2.INTER_LINEAR
    return cv2.resize(img, (w, h), interpolation=interp)


# --------------------------------------------------------------------------- annotations and flows


def _check_type(path: Path, value: Any, types: tuple[type, ...], what: str) -> None:
    # bool is an int subclass; a level of `true` is a malformed file, not level 1.
    if isinstance(value, bool) or not isinstance(value, types):
        raise DataError(path, f"malformed annotation: {what} must be {'/'.join(t.__name__ for t in types)}, got {value!r}")


def read_annotation(path: Path) -> dict[str, Any]:
    """Read and validate an ATD-12K annotation JSON (RoI, level, image size, motion, behaviour)."""
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except FileNotFoundError as exc:
        raise DataError(path, "annotation JSON is missing (the test split requires one per triplet)") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(path, f"malformed annotation: not valid JSON ({exc})") from exc
    if not isinstance(raw, dict):
        raise DataError(path, "malformed annotation: top level must be an object")
    missing = [k for k in ("motion_RoI", "level", "image_size", "general_motion_type") if k not in raw]
    if missing:
        raise DataError(path, f"malformed annotation: missing key(s) {missing}")
    roi = raw["motion_RoI"]
    if not isinstance(roi, dict):
        raise DataError(path, "malformed annotation: motion_RoI must be an object")
    for key in ("x", "y", "width", "height"):
        if key not in roi:
            raise DataError(path, f"malformed annotation: motion_RoI lacks {key!r}")
        _check_type(path, roi[key], (int, float), f"motion_RoI.{key}")
    _check_type(path, raw["level"], (int,), "level")
    if raw["level"] not in (0, 1, 2):
        raise DataError(path, f"malformed annotation: level must be 0, 1 or 2, got {raw['level']}")
    size = raw["image_size"]
    if not isinstance(size, list) or len(size) != 2:
        raise DataError(path, f"malformed annotation: image_size must be [W, H], got {size!r}")
    for v in size:
        _check_type(path, v, (int,), "image_size entries")
        if v <= 0:
            raise DataError(path, f"malformed annotation: image_size must be positive, got {size}")
    _check_type(path, raw["general_motion_type"], (str,), "general_motion_type")
    behavior = raw.get("behavior", "")
    _check_type(path, behavior, (str,), "behavior")
    return {
        "roi": tuple(float(roi[k]) for k in ("x", "y", "width", "height")),
        "level": int(raw["level"]),
        "image_size": (int(size[0]), int(size[1])),
        "motion_type": raw["general_motion_type"].strip().lower(),
        "behavior": behavior.strip().lower(),
    }


def scale_roi(roi: Sequence[float], image_size: tuple[int, int], size: tuple[int, int]) -> tuple[int, int, int, int]:
    """Map an RoI (x, y, w, h) from ``image_size`` pixels to ``size`` pixels.

    Floor division by the scale factor, as AnimeInterp's evaluation does for 960x540.
    """
    sx = image_size[0] / size[0]
    sy = image_size[1] / size[1]
    x, y, w, h = roi
    return int(x // sx), int(y // sy), int(w // sx), int(h // sy)


def read_flow(path: Path, frame_hw: tuple[int, int]) -> np.ndarray:
    """Load a float (2, h, w) flow .npy whose grid has the frames' aspect ratio."""
    try:
        flow = np.load(path, allow_pickle=False)
    except FileNotFoundError as exc:
        raise DataError(path, "flow file is missing") from exc
    except Exception as exc:  # a damaged header: ValueError, EOFError, tokenize errors, MemoryError...
        raise DataError(path, f"flow file is not a readable .npy array ({type(exc).__name__}: {exc})") from exc
    if flow.dtype.kind != "f":
        raise DataError(path, f"flow must be a float array, got dtype {flow.dtype}")
    if flow.ndim != 3 or flow.shape[0] != 2 or min(flow.shape[1:]) < 1:
        raise DataError(path, f"flow must have shape (2, H, W), got {flow.shape}")
    h, w = frame_hw
    if abs(flow.shape[2] / flow.shape[1] - w / h) > 0.02 * (w / h):
        raise DataError(path, f"flow grid {flow.shape[2]}x{flow.shape[1]} does not match the frames' {w}x{h} aspect ratio")
    if not np.isfinite(flow).all():
        raise DataError(path, "flow contains NaN or infinite values")
    return flow


# --------------------------------------------------------------------------- loading


def _choose_flow_source(record: TripletRecord, flow_source: str) -> str:
    if flow_source != "auto":
        return flow_source
    if record.gt_flow_paths is not None:
        return "gt"
    if record.sgm_flow_paths is not None:
        return "sgm"
    return "dis"


def load_triplet(
    record: TripletRecord,
    size: tuple[int, int] | None = None,
    flow_source: str = "auto",
    image_mode: str = "convert",
    dis_preset: str = "medium",
    extra_times: Sequence[float] | None = None,
) -> LoadedTriplet:
    """Read, validate and resize one triplet.

    size: (W, H) of the stored frames; None keeps the original size.
    flow_source: "gt" / "sgm" read flow files (DataError if absent), "dis" computes OpenCV DIS
        flow on the resized frames, "none" stores no flow, "auto" takes gt, else sgm, else dis.
    extra_times: which extra frames to load (DataError if one is absent); None = all present.
    Raises DataError naming the offending file for any problem with this triplet.
    """
    if flow_source not in FLOW_SOURCES:
        raise ValueError(f"flow_source must be one of {FLOW_SOURCES}, got {flow_source!r}")
    if dis_preset not in DIS_PRESETS:
        raise ValueError(f"dis_preset must be one of {sorted(DIS_PRESETS)}, got {dis_preset!r}")

    originals = [read_image(p, image_mode) for p in record.frame_paths]
    orig_h, orig_w = originals[0].shape[:2]
    for path, img in zip(record.frame_paths[1:], originals[1:]):
        if img.shape != originals[0].shape:
            raise DataError(
                path, f"frame is {img.shape[1]}x{img.shape[0]} but {record.frame_paths[0].name} is {orig_w}x{orig_h}"
            )
    size = (orig_w, orig_h) if size is None else (int(size[0]), int(size[1]))
    frames = np.stack([resize_image(img, size) for img in originals])

    meta: dict[str, Any] = {
        "name": record.name,
        "split": record.split,
        "clip": record.clip,
        "level": -1,
        "roi": (-1, -1, -1, -1),
        "motion_type": "unknown",
        "behavior": "",
        "style": style_of(record.name),
        "orig_width": orig_w,
        "orig_height": orig_h,
    }
    # Real ATD-12K has annotations for the test split only.
    annotation_path = record.annotation_path or record.expected_annotation_path
    if record.split == "test" or record.annotation_path is not None:
        ann = read_annotation(annotation_path)
        meta.update(
            level=ann["level"],
            roi=scale_roi(ann["roi"], ann["image_size"], size),
            motion_type=ann["motion_type"],
            behavior=ann["behavior"],
        )

    source = _choose_flow_source(record, flow_source)
    flows = None
    if source in ("gt", "sgm"):
        paths = record.gt_flow_paths if source == "gt" else record.sgm_flow_paths
        if paths is None:
            folder = GT_FLOW_DIR if source == "gt" else SGM_FLOW_DIR
            raise DataError(record.dir, f"flow_source={source!r} but the triplet has no {folder}/ entry")
        flows = np.stack([resize_flow(read_flow(p, (orig_h, orig_w)), size) for p in paths])
    elif source == "dis":
        flows = np.stack(
            [dis_flow(frames[0], frames[2], dis_preset), dis_flow(frames[2], frames[0], dis_preset)]
        )
    meta["flow_source"] = source

    times = tuple(record.extra_frame_paths) if extra_times is None else tuple(time_key(t) for t in extra_times)
    extras = []
    for t in times:
        path = record.extra_frame_paths.get(t)
        if path is None:
            raise DataError(record.dir, f"no extra frame for t={t:.3f} (expected extra_frames/.../t{t:.3f}.png)")
        img = read_image(path, image_mode)
        if img.shape[:2] != (orig_h, orig_w):
            raise DataError(path, f"extra frame is {img.shape[1]}x{img.shape[0]} but the triplet is {orig_w}x{orig_h}")
        extras.append(resize_image(img, size))
    extra_frames = np.stack(extras) if extras else np.zeros((0, size[1], size[0], 3), np.uint8)

    return LoadedTriplet(
        name=record.name,
        frames=frames,
        flows=flows,
        flow_source=source,
        meta=meta,
        extra_frames=extra_frames,
        extra_times=times,
    )
