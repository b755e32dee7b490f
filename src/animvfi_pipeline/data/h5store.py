"""The HDF5 triplet store: a streaming, atomic writer and a lazy, picklable reader.

Schema: docs/architecture.md ("The HDF5 store"). Each chunk holds one triplet, either whole or
one square tile of it (``chunk_tile``), so reading a training crop decompresses only the tiles it
touches, and writing never holds more than a few triplets in memory whatever the dataset size.
"""
from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import multiprocessing as mp
import os
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import cv2
import h5py
import hdf5plugin  # registers the Blosc filter with HDF5, for writing and for every reader
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from animvfi_pipeline.data.atd12k import (
    DIS_PRESETS,
    FLOW_SOURCES,
    IMAGE_MODES,
    TripletRecord,
    style_of,
    load_triplet,
    time_key,
)
from animvfi_pipeline.data.flow import dis_flow_pair
from animvfi_pipeline.errors import DataError
from animvfi_pipeline.utils_io import atomic_path

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
# HDF5 1.10+ file structures: their superblock, object headers and chunk indexes carry checksums
# (the 1.8-compatible default ones do not), so a damaged store fails to open or read.
LIBVER = ("v110", "latest")
REBUILD_HINT = "rebuild it with `kedro run --pipelines data_ingestion`"
SPLITS = ("train", "val", "test")
ON_ERROR = ("fail", "skip")
STRING_COLUMNS = ("name", "split", "clip", "motion_type", "behavior", "flow_source", "style")
INT_COLUMNS = ("level", "orig_width", "orig_height")
# Where a triplet cut from a video came from (data/video_ingest.py); stores of ATD-12K triplets
# have none of these. (n, 3) columns hold frame1, frame2, frame3.
PROVENANCE_COLUMNS = {"source_file": "str", "shot": "int32", "gap": "int32", "frame_index": "int32",
                      "frame_time": "float64"}
DIGESTED_ATTRS = ("format_version", "height", "width", "extra_times", "source_root", "skipped", "ingestion_config")
OPTIONAL_DIGESTED_ATTRS = ("dropped",)  # digested only when present, so older stores keep their digest
# forkserver: workers start from a clean process, not a fork of a (possibly multi-threaded)
# Kedro or notebook process, and still start fast after the first one.
_MP_CONTEXT = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"


@dataclass
class IngestionConfig:
    """How to turn ATD-12K records into a store (the `ingestion:` parameters)."""

    size: tuple[int, int]  # (W, H) of every stored frame
    flow_source: str = "auto"  # auto | gt | sgm | dis | none (see load_triplet)
    val_fraction: float = 0.1  # share of training CLIPS moved to the validation split
    val_styles: tuple[str, ...] = ()  # style families (data.atd12k.style_of) that go to val whole, never train
    seed: int = 0  # picks the validation clips
    on_error: str = "fail"  # fail: first bad triplet raises; skip: leave it out, record why
    workers: int = 2  # decoding processes; 0 decodes in this process
    compression: str | None = "blosc-lz4"  # see COMPRESSIONS; blosc-* need hdf5plugin (a dependency)
    extra_times: tuple[float, ...] | None = None  # None: the times every triplet has
    image_mode: str = "convert"  # convert | refuse (grayscale, RGBA, 16-bit)
    dis_preset: str = "medium"  # OpenCV DIS preset when flow is computed
    chunk_tile: int | None = 128  # square tiles of this side per chunk; None: one chunk per triplet
    dis_prior: str | None = None  # DIS preset: also store the flow net's prior (see docs/data.md)

    def __post_init__(self) -> None:
        self.size = (int(self.size[0]), int(self.size[1]))
        self.val_styles = tuple(str(v) for v in (self.val_styles or ()))
        if min(self.size) < 1:
            raise ValueError(f"size must be positive (W, H), got {self.size}")
        if self.flow_source not in FLOW_SOURCES:
            raise ValueError(f"flow_source must be one of {FLOW_SOURCES}, got {self.flow_source!r}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR}, got {self.on_error!r}")
        if self.image_mode not in IMAGE_MODES:
            raise ValueError(f"image_mode must be one of {IMAGE_MODES}, got {self.image_mode!r}")
        if self.dis_preset not in DIS_PRESETS:
            raise ValueError(f"dis_preset must be one of {sorted(DIS_PRESETS)}, got {self.dis_preset!r}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")
        if self.extra_times is not None:
            self.extra_times = tuple(time_key(t) for t in self.extra_times)
        if self.chunk_tile is not None:
            self.chunk_tile = int(self.chunk_tile)
            if self.chunk_tile < 16:
                raise ValueError(f"chunk_tile must be at least 16 pixels (or null), got {self.chunk_tile}")
        if self.dis_prior is not None and self.dis_prior not in DIS_PRESETS:
            raise ValueError(f"dis_prior must be null or one of {sorted(DIS_PRESETS)}, got {self.dis_prior!r}")
        _h5_compression(self.compression)  # fail early on a typo


@dataclass
class IngestionResult:
    path: Path
    n_triplets: int
    split_counts: dict[str, int]
    skipped: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class IngestionPlan:
    """What to ingest and how: a node builds it, the TripletStoreDataset carries it out."""

    records: list[TripletRecord]
    config: IngestionConfig
    source_root: Path | None = None
    progress: bool = True

    def write(self, path: str | Path) -> IngestionResult:
        return write_triplets_h5(path, self.records, self.config, source_root=self.source_root, progress=self.progress)


COMPRESSIONS = "blosc-lz4 | blosc-zstd | lzf | gzip | gzip-<0..9> | none"


def _h5_compression(name: str | None) -> dict[str, Any]:
    """h5py filter arguments for a compression name (docs/data.md has the measured trade-offs)."""
    if name is None or str(name).lower() == "none":
        return {}
    name = str(name).lower()
    if name in ("blosc-lz4", "blosc-zstd"):
        # Bit-shuffling groups the similar high bits of neighbouring float16 flow values and
        # 8-bit colours, which is what makes a fast codec compress them well.
        return dict(hdf5plugin.Blosc(cname=name[6:], clevel=5 if name == "blosc-lz4" else 1,
                                     shuffle=hdf5plugin.Blosc.BITSHUFFLE))
    if name == "lzf":
        return {"compression": "lzf"}
    if name == "gzip":
        return {"compression": "gzip", "compression_opts": 1}
    if name.startswith("gzip-") and name[5:].isdigit() and 0 <= int(name[5:]) <= 9:
        return {"compression": "gzip", "compression_opts": int(name[5:])}
    raise ValueError(f"compression must be one of {COMPRESSIONS}, got {name!r}")


def assign_splits(records: Sequence[TripletRecord], val_fraction: float, seed: int,
                  val_styles: Sequence[str] = ()) -> list[str]:
    """Split label per record: test stays test; training clips go to train or val whole.

    Clips of a style family in ``val_styles`` all go to val, so training never sees that family
    and validation measures transfer to it. Of the other training clips, about ``val_fraction``
    (at least one when the fraction is positive, never all of them) are drawn with ``seed``; the
    draw depends only on the set of clip keys.
    """
    held = {r.clip for r in records if r.split == "train" and style_of(r.name) in set(val_styles)}
    clips = sorted({r.clip for r in records if r.split == "train"} - held)
    n_val = int(round(val_fraction * len(clips)))
    if val_fraction > 0 and n_val == 0:
        n_val = 1
    n_val = min(n_val, max(len(clips) - 1, 0))
    rng = np.random.default_rng(seed)
    val_clips = {clips[i] for i in rng.permutation(len(clips))[:n_val]} | held
    return ["test" if r.split == "test" else ("val" if r.clip in val_clips else "train") for r in records]


def common_extra_times(records: Iterable[TripletRecord]) -> tuple[float, ...]:
    """The extra-frame times present for every record (empty if any record has none)."""
    common: set[float] | None = None
    for r in records:
        times = set(r.extra_frame_paths)
        common = times if common is None else common & times
    return tuple(sorted(common or ()))


# --------------------------------------------------------------------------- chunk layout


Window = tuple[int, int, int, int]  # top, left, height, width of a crop, in stored pixels
# Axis of the image height in one triplet's array of each dataset (width follows it).
_HEIGHT_AXIS = {"frames": 1, "flows": 2, "prior": 1, "extra_frames": 1}


@dataclass(frozen=True)
class _Layout:
    """The chunked datasets of one store: name -> (shape of one triplet, dtype, chunk), and the filter.

    A chunk holds one triplet, either whole (``tile=None``) or a ``tile x tile`` square of all its
    frames (or flows, or prior channels) at once: a training crop needs all of them at the same
    place, and HDF5 then decompresses only the tiles the crop touches.
    """

    items: tuple[tuple[str, tuple[int, ...], str, tuple[int, ...]], ...]
    compression: tuple[tuple[str, Any], ...]

    @classmethod
    def make(cls, size: tuple[int, int], k: int, with_flows: bool, compression: str | None,
             tile: int | None = None, with_prior: bool = False) -> _Layout:
        w, h = size
        shapes = [("frames", (3, h, w, 3), "uint8")]
        if with_flows:
            shapes.append(("flows", (2, 2, h, w), "float16"))
        if with_prior:
            shapes.append(("prior", (4, h, w), "float16"))
        if k:
            shapes.append(("extra_frames", (k, h, w, 3), "uint8"))
        items = []
        for name, shape, dtype in shapes:
            chunk = list(shape)
            if tile is not None:
                y = _HEIGHT_AXIS[name]
                chunk[y], chunk[y + 1] = min(tile, h), min(tile, w)
            items.append((name, shape, dtype, tuple(chunk)))
        # fletcher32 after the codec: every chunk carries a checksum of its compressed bytes, which
        # HDF5 checks on each read, so a flipped or lost byte is an error, never wrong pixels.
        return cls(tuple(items), tuple(sorted({**_h5_compression(compression), "fletcher32": True}.items())))

    def create(self, f: h5py.File, n: int) -> dict[str, h5py.Dataset]:
        return {
            name: f.create_dataset(
                name,
                shape=(n, *shape),
                maxshape=(None, *shape),
                chunks=(1, *chunk),
                dtype=dtype,
                track_times=False,  # so that a rerun writes the same bytes
                **dict(self.compression),
            )
            for name, shape, dtype, chunk in self.items
        }

    def chunk_offsets(self, name: str) -> list[tuple[int, ...]]:
        """Offsets of one triplet's chunks of dataset ``name`` (without the triplet axis), C order."""
        _, shape, _, chunk = next(item for item in self.items if item[0] == name)
        return list(itertools.product(*(range(0, n, c) for n, c in zip(shape, chunk))))


_encoders: dict[_Layout, tuple[h5py.File, dict[str, h5py.Dataset]]] = {}


def _encode_chunks(layout: _Layout, arrays: dict[str, np.ndarray]) -> dict[str, list[tuple[int, bytes]]]:
    """Compress one triplet's chunks with HDF5's own filters: name -> [(filter mask, bytes)] in
    ``layout.chunk_offsets(name)`` order.

    Done in the worker through a one-triplet in-memory HDF5 file, so that the single writer
    only copies finished chunks into the store (write_direct_chunk) and workers send back
    compressed bytes instead of ~9 MB of arrays per 960x540 triplet.
    """
    if layout not in _encoders:
        if len(_encoders) >= 4:  # a long-lived process may ingest several layouts; keep a few
            for f, _ in _encoders.values():
                f.close()
            _encoders.clear()
        # No chunk cache: each write goes through the filter at once instead of via a cached copy.
        f = h5py.File(f"animvfi-chunks-{os.getpid()}-{id(layout)}", "w", driver="core", backing_store=False,
                      rdcc_nbytes=0)
        _encoders[layout] = (f, layout.create(f, 1))
    _, datasets = _encoders[layout]
    chunks = {}
    for name, ds in datasets.items():
        ds[0] = arrays[name]
        chunks[name] = [ds.id.read_direct_chunk((0, *offset)) for offset in layout.chunk_offsets(name)]
    return chunks


# --------------------------------------------------------------------------- decoding workers


def to_float16(a: np.ndarray) -> np.ndarray:
    """``a.astype(np.float16)``, the same bits (round to nearest even, signed zeros, inf on
    overflow; tests/data/test_h5store.py checks it), three times faster: NumPy converts one
    value at a time, OpenCV with SIMD, which at 960x540 saves ~3.5 ms of CPU per triplet."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    return cv2.multiply(a.reshape(-1, a.shape[-1]), 1.0, dtype=cv2.CV_16F).reshape(a.shape)


def _init_worker() -> None:
    # Each worker decodes one triplet at a time; OpenCV's own threads would only oversubscribe.
    cv2.setNumThreads(1)


def _load_for_store(
    record: TripletRecord, kwargs: dict[str, Any], layout: _Layout, dis_prior: str | None = None
) -> tuple[str, Any]:
    """Worker body: ("ok", (meta, encoded chunks)) or ("error", (path, problem))."""
    try:
        triplet = load_triplet(record, **kwargs)
    except DataError as exc:
        return "error", (exc.path, exc.problem)
    arrays = {"frames": triplet.frames, "extra_frames": triplet.extra_frames}
    if triplet.flows is not None:
        arrays["flows"] = to_float16(triplet.flows)
    if dis_prior is not None:
        # What FlowNet.prior computes for the whole stored frame1 and frame3 (as at inference on
        # frames of this size); training crops it like the frames.
        arrays["prior"] = to_float16(dis_flow_pair(triplet.frames[0], triplet.frames[2], dis_prior))
    return "ok", (triplet.meta, _encode_chunks(layout, arrays))


def ordered_pool_map(func: Any, items: Iterable[Any], workers: int, *args: Any) -> Iterator[Any]:
    """Yield ``func(item, *args)`` for each item, in order, computed by ``workers`` processes
    (0: in this process) with at most ``2 * workers`` items in flight.

    ``items`` is consumed lazily, so a generator that decodes a video is read only as fast as
    the workers keep up. ``func`` must be a module-level function (it is pickled by name).
    """
    if workers == 0:
        for item in items:
            yield func(item, *args)
        return
    ctx = mp.get_context(_MP_CONTEXT)
    # Pool.imap would queue every result that the writer has not consumed yet; a bounded window
    # of async tasks keeps peak memory independent of the dataset size.
    with ctx.Pool(workers, initializer=_init_worker) as pool:
        pending: deque = deque()
        todo = iter(items)
        for item in todo:
            pending.append(pool.apply_async(func, (item, *args)))
            if len(pending) >= 2 * workers:
                break
        while pending:
            result = pending.popleft().get()
            item = next(todo, None)
            if item is not None:
                pending.append(pool.apply_async(func, (item, *args)))
            yield result


# --------------------------------------------------------------------------- writing


class _StoreWriter:
    """Appends encoded triplets to pre-sized datasets; shrinks them at the end if some were skipped."""

    def __init__(self, f: h5py.File, n: int, layout: _Layout):
        self.f = f
        self.layout = layout
        self.datasets = layout.create(f, n)
        self.n_written = 0
        self.rows: list[dict[str, Any]] = []

    def append(self, meta: dict[str, Any], chunks: dict[str, list[tuple[int, bytes]]], split: str) -> None:
        i = self.n_written
        for name, ds in self.datasets.items():
            for offset, (mask, data) in zip(self.layout.chunk_offsets(name), chunks[name], strict=True):
                ds.id.write_direct_chunk((i, *offset), data, filter_mask=mask)
        self.rows.append({**meta, "split": split})
        self.n_written += 1

    def rollback(self, n: int) -> None:
        """Forget every triplet from number ``n`` on (their chunks are overwritten or cut off by
        ``finish``): a source that fails halfway leaves none of its triplets."""
        self.n_written = n
        del self.rows[n:]

    def finish(self, attrs: dict[str, Any]) -> None:
        n = self.n_written
        for ds in self.datasets.values():
            if ds.shape[0] != n:
                ds.resize(n, axis=0)
        meta = self.f.create_group("meta", track_order=True)
        for col in STRING_COLUMNS:
            values = np.array([str(r[col]) for r in self.rows], dtype=object)
            meta.create_dataset(col, data=values, shape=(n,), dtype=h5py.string_dtype(), track_times=False)
        for col in INT_COLUMNS:
            meta.create_dataset(col, data=np.array([r[col] for r in self.rows], np.int32).reshape(n), track_times=False)
        roi = np.array([r["roi"] for r in self.rows], np.int32).reshape(n, 4)
        meta.create_dataset("roi", data=roi, track_times=False)
        if self.rows and "source_file" in self.rows[0]:
            for col, dtype in PROVENANCE_COLUMNS.items():
                values = [r[col] for r in self.rows]
                if dtype == "str":
                    meta.create_dataset(col, data=np.array(values, dtype=object), shape=(n,),
                                        dtype=h5py.string_dtype(), track_times=False)
                else:
                    meta.create_dataset(col, data=np.array(values, dtype), track_times=False)
        for key, value in attrs.items():
            self.f.attrs[key] = value
        # The variable-length strings of meta and of the attributes live in HDF5's global heap,
        # which has no checksum of its own: this digest covers them (checked on open).
        self.f.attrs["meta_sha256"] = _meta_digest(self.f)
        # Written last: a reader that sees complete=True sees everything else too.
        self.f.attrs["complete"] = True


def store_attrs(size: tuple[int, int], extra_times: Sequence[float], source_root: str | Path | None,
                skipped: list[dict[str, str]], config_json: dict[str, Any]) -> dict[str, Any]:
    """The store's descriptive attributes (everything but the checksum and the ``complete`` flag)."""
    return {
        "format_version": FORMAT_VERSION,
        "height": size[1],
        "width": size[0],
        "extra_times": np.asarray(extra_times, np.float64),
        "source_root": str(source_root) if source_root is not None else "",
        "skipped": json.dumps(skipped),
        "ingestion_config": json.dumps(config_json, sort_keys=True),
    }


def write_triplets_h5(
    path: str | Path,
    records: Sequence[TripletRecord],
    config: IngestionConfig,
    *,
    source_root: str | Path | None = None,
    progress: bool = True,
) -> IngestionResult:
    """Decode, resize and write ``records`` to an HDF5 store at ``path``, atomically.

    Triplets stream through a pool of ``config.workers`` processes into one-triplet chunks
    (whole, or tiles of ``config.chunk_tile`` pixels a side).
    With ``on_error="fail"`` the first bad triplet raises DataError and nothing appears at
    ``path`` (an existing store there is left as it was); with ``"skip"`` it is left out and
    listed in the store's ``skipped`` attribute. The same records and config give the same
    store content on every run.
    """
    path = Path(path)
    records = list(records)
    if not records:
        raise DataError(source_root or path, "no triplets to ingest")
    cfg = config
    started = time.perf_counter()
    splits = assign_splits(records, cfg.val_fraction, cfg.seed, cfg.val_styles)
    times = common_extra_times(records) if cfg.extra_times is None else cfg.extra_times
    load_kwargs = dict(
        size=cfg.size,
        flow_source=cfg.flow_source,
        image_mode=cfg.image_mode,
        dis_preset=cfg.dis_preset,
        extra_times=times,
    )
    skipped: list[dict[str, str]] = []
    logger.info(
        "Ingesting %d triplets into %s at %dx%d (flow %s, %d extra times, %d workers)",
        len(records), path, cfg.size[0], cfg.size[1], cfg.flow_source, len(times), cfg.workers,
    )
    layout = _Layout.make(cfg.size, len(times), cfg.flow_source != "none", cfg.compression,
                          tile=cfg.chunk_tile, with_prior=cfg.dis_prior is not None)
    stream = ordered_pool_map(_load_for_store, records, cfg.workers, load_kwargs, layout, cfg.dis_prior)
    # closing(): on an error the worker pool is shut down at once, not whenever the
    # generator happens to be garbage-collected.
    with atomic_path(path) as tmp, h5py.File(tmp, "w", libver=LIBVER) as f, contextlib.closing(stream):
        writer = _StoreWriter(f, len(records), layout)
        for record, split, (status, payload) in tqdm(
            zip(records, splits, stream), total=len(records), disable=not progress, desc="ingest", unit="triplet"
        ):
            if status == "ok":
                writer.append(*payload, split)
                continue
            bad_path, problem = payload
            if cfg.on_error == "fail":
                raise DataError(bad_path, problem)
            logger.warning("Skipping triplet %s: %s: %s", record.name, bad_path, problem)
            skipped.append({"name": record.name, "path": str(bad_path), "reason": problem})
        if writer.n_written == 0:
            raise DataError(source_root or records[0].dir.parent, f"all {len(records)} triplets are bad; nothing to store")
        config_json = {**asdict(cfg), "extra_times": list(times)}
        if cfg.dis_prior is not None:
            writer.datasets["prior"].attrs["dis_preset"] = cfg.dis_prior
        writer.finish(store_attrs(cfg.size, times, source_root, skipped, config_json))
        counts = {s: sum(1 for r in writer.rows if r["split"] == s) for s in SPLITS}
    result = IngestionResult(path, writer.n_written, counts, skipped, time.perf_counter() - started)
    logger.info(
        "Wrote %s: %d triplets (train %d, val %d, test %d), %d skipped, %.1f s",
        path, result.n_triplets, counts["train"], counts["val"], counts["test"], len(skipped), result.seconds,
    )
    return result


def _meta_digest(f: h5py.File) -> str:
    """sha256 of the meta columns and the descriptive attributes, as stored."""
    digest = hashlib.sha256()
    for col in (*STRING_COLUMNS, *INT_COLUMNS, "roi", *PROVENANCE_COLUMNS):
        if col not in f["meta"]:
            continue
        ds = f["meta"][col]
        values = ds.asstr()[...] if ds.dtype.kind == "O" else ds[...]
        digest.update(col.encode() + b"\0" + json.dumps(np.asarray(values).tolist()).encode() + b"\0")
    for key in (*DIGESTED_ATTRS, *(k for k in OPTIONAL_DIGESTED_ATTRS if k in f.attrs)):
        value = f.attrs.get(key)
        value = value.tolist() if isinstance(value, np.ndarray) else value
        digest.update(key.encode() + b"\0" + json.dumps(value, default=str).encode() + b"\0")
    return digest.hexdigest()


# --------------------------------------------------------------------------- reading


class TripletStore:
    """Lazy reader of a complete store; safe to pickle into DataLoader workers.

    The HDF5 file is opened on first access in each process (an h5py handle must never cross
    a fork), and the handle is dropped when pickled.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._file: h5py.File | None = None
        self._pid: int | None = None
        self._datasets: dict[str, h5py.Dataset] = {}  # looked up once per process: ~0.4 ms a time
        self._meta: pd.DataFrame | None = None
        if not self.path.is_file():
            raise DataError(self.path, "triplet store does not exist (run the data_ingestion pipeline)")
        try:
            with h5py.File(self.path, "r") as f:
                attrs = dict(f.attrs)
                self._len = int(f["frames"].shape[0]) if "frames" in f else 0
                self._has_flows = "flows" in f
                self._has_extra = "extra_frames" in f
                self.prior_preset: str | None = str(f["prior"].attrs["dis_preset"]) if "prior" in f else None
        except (OSError, KeyError, ValueError, RuntimeError) as exc:  # how h5py reports damage varies
            raise DataError(self.path, f"not a readable HDF5 file, damaged or truncated ({exc}); {REBUILD_HINT}") from exc
        if not attrs.get("complete", False):
            raise DataError(self.path, f"triplet store is incomplete (an interrupted write?); {REBUILD_HINT}")
        if int(attrs.get("format_version", -1)) != FORMAT_VERSION:
            raise DataError(self.path, f"unsupported store format_version {attrs.get('format_version')!r}; {REBUILD_HINT}")
        self._check_digest(attrs.get("meta_sha256"))
        self.height = int(attrs["height"])
        self.width = int(attrs["width"])
        self.extra_times: tuple[float, ...] = tuple(float(t) for t in np.atleast_1d(attrs.get("extra_times", [])))
        self.source_root = str(attrs.get("source_root", ""))
        self.skipped: list[dict[str, str]] = json.loads(attrs.get("skipped", "[]"))
        self.ingestion_config: dict[str, Any] = json.loads(attrs.get("ingestion_config", "{}"))
        # Video stores: how many candidate triplets each drop rule left out (docs/video.md).
        self.dropped: dict[str, int] = json.loads(attrs.get("dropped", "{}"))

    def _check_digest(self, recorded: Any) -> None:
        if recorded is None:
            logger.warning("%s was written without checksums (by an older version): damage would go "
                           "unnoticed; %s", self.path, REBUILD_HINT)
            return
        with self._reading("meta"), h5py.File(self.path, "r") as f:
            actual = _meta_digest(f)
        if actual != recorded:
            raise DataError(self.path, f"metadata does not match its checksum (the file is damaged); {REBUILD_HINT}")

    @contextlib.contextmanager
    def _reading(self, what: str) -> Iterator[None]:
        """HDF5 reports a failed chunk checksum, a truncated file or a broken structure as an
        OSError (or a KeyError/ValueError for a damaged link); all mean the same to a user."""
        try:
            yield
        except (OSError, KeyError, ValueError, RuntimeError) as exc:
            if isinstance(exc, DataError):
                raise
            raise DataError(self.path, f"cannot read {what}: the store is damaged ({exc}); {REBUILD_HINT}") from exc

    # -- pickling and handles
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_file"] = None
        state["_pid"] = None
        state["_datasets"] = {}
        return state

    def _h5(self) -> h5py.File:
        if self._file is None or self._pid != os.getpid():
            self._file = h5py.File(self.path, "r")
            self._pid = os.getpid()
            self._datasets = {}
        return self._file

    def _dataset(self, name: str) -> h5py.Dataset:
        f = self._h5()
        if name not in self._datasets:
            self._datasets[name] = f[name]
        return self._datasets[name]

    def close(self) -> None:
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = None
        self._pid = None
        self._datasets = {}

    def __enter__(self) -> TripletStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"TripletStore({str(self.path)!r}, n={self._len}, {self.width}x{self.height})"

    # -- contents
    def __len__(self) -> int:
        return self._len

    @property
    def has_flows(self) -> bool:
        return self._has_flows

    def _index(self, i: int) -> int:
        i = int(i)
        if i < 0:
            i += self._len
        if not 0 <= i < self._len:
            raise IndexError(f"triplet index {i} out of range for {self._len} triplets")
        return i

    def _read(self, name: str, i: int, window: Window | None) -> np.ndarray:
        """Triplet ``i`` of dataset ``name``, or only the ``window`` (top, left, height, width) of it.

        A window is an h5py hyperslab, so HDF5 decompresses only the chunks it touches: with a
        tiled store (``chunk_tile``) a 256x256 crop of a 960x540 triplet decodes 4 to 9 tiles
        instead of the whole frames.
        """
        i = self._index(i)
        index: list[Any] = [i]
        if window is not None:
            top, left, height, width = (int(v) for v in window)
            if height < 1 or width < 1 or top < 0 or left < 0 or top + height > self.height or left + width > self.width:
                raise ValueError(f"window {tuple(window)} (top, left, height, width) is not inside the "
                                 f"{self.height}x{self.width} frames")
            index += [slice(None)] * _HEIGHT_AXIS[name] + [slice(top, top + height), slice(left, left + width)]
        with self._reading(f"the {name} of triplet {i}"):  # a damaged chunk or header is a DataError
            return self._dataset(name)[tuple(index)]

    def frames(self, i: int, window: Window | None = None) -> np.ndarray:
        """uint8 (3, H, W, 3): frame1, frame2, frame3 of triplet ``i`` (or of its ``window``)."""
        return self._read("frames", i, window)

    def flows(self, i: int, window: Window | None = None, dtype: Any = np.float32) -> np.ndarray:
        """float32 (2, 2, H, W): [0] = flow 1->3, [1] = flow 3->1, in stored pixels (or the ``window``).
        ``dtype=None`` returns them as stored (float16)."""
        if not self._has_flows:
            raise DataError(self.path, "store has no flows (it was ingested with flow_source='none')")
        return _as(self._read("flows", i, window), dtype)

    @property
    def has_prior(self) -> bool:
        return self.prior_preset is not None

    def prior(self, i: int, window: Window | None = None, dtype: Any = np.float32) -> np.ndarray:
        """float32 (4, H, W): the DIS prior (flow 1->3, flow 3->1) of the whole stored frame1 and
        frame3 at preset ``prior_preset``, rounded to float16 when stored (``dtype=None``: as stored)."""
        if self.prior_preset is None:
            raise DataError(self.path, "store has no DIS prior (ingest with ingestion.dis_prior set to a preset)")
        return _as(self._read("prior", i, window), dtype)

    def extra(self, i: int, window: Window | None = None) -> np.ndarray:
        """uint8 (K, H, W, 3): frames at ``extra_times`` (K may be 0)."""
        if not self._has_extra:
            self._index(i)
            h, w = (self.height, self.width) if window is None else (int(window[2]), int(window[3]))
            return np.zeros((0, h, w, 3), np.uint8)
        return self._read("extra_frames", i, window)

    @property
    def meta(self) -> pd.DataFrame:
        """One row per triplet; the RoI as roi_x, roi_y, roi_w, roi_h (-1 = unknown)."""
        return self._load_meta().copy()

    def _load_meta(self) -> pd.DataFrame:
        if self._meta is None:
            with self._reading("the metadata"):
                self._meta = self._read_meta()
        return self._meta

    def _read_meta(self) -> pd.DataFrame:
        g = self._h5()["meta"]
        cols: dict[str, Any] = {}
        for col in STRING_COLUMNS:
            if col not in g:  # stores written before the column existed
                cols[col] = np.full(self._len, "", dtype=object)
                continue
            cols[col] = g[col].asstr()[...] if self._len else np.array([], dtype=object)
        roi = g["roi"][...].reshape(-1, 4)
        for j, col in enumerate(("roi_x", "roi_y", "roi_w", "roi_h")):
            cols[col] = roi[:, j]
        for col in INT_COLUMNS:
            cols[col] = g[col][...]
        order = ["name", "split", "clip", "level", "roi_x", "roi_y", "roi_w", "roi_h",
                 "motion_type", "behavior", "flow_source", "style", "orig_width", "orig_height"]
        if "source_file" in g:  # provenance of triplets cut from videos
            cols["source_file"] = g["source_file"].asstr()[...] if self._len else np.array([], dtype=object)
            cols["shot"], cols["gap"] = g["shot"][...], g["gap"][...]
            order += ["source_file", "shot", "gap"]
            for k in range(3):
                cols[f"frame{k + 1}_index"] = g["frame_index"][...].reshape(-1, 3)[:, k]
                cols[f"frame{k + 1}_time"] = g["frame_time"][...].reshape(-1, 3)[:, k]
            order += [f"frame{k}_{what}" for what in ("index", "time") for k in (1, 2, 3)]
        return pd.DataFrame({c: cols[c] for c in order})

    def indices(self, split: str) -> np.ndarray:
        """Row numbers of ``split`` ("train", "val" or "test"), ascending."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return np.flatnonzero(self._load_meta()["split"].to_numpy() == split)


def _as(a: np.ndarray, dtype: Any) -> np.ndarray:
    return a if dtype is None else a.astype(dtype)
