"""Nodes of the data_ingestion pipeline: raw folder -> HDF5 triplet store -> reports.

The raw folder is ATD-12K-shaped (base, conf/atd12k) or a folder of the user's own clips
(conf/video); the same nodes serve both. The work happens in the library (data/atd12k.py,
data/video_ingest.py, data/h5store.py) and in the custom datasets, which own the files; these
functions only turn parameters into the objects those expect.
"""
from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import pandas as pd

from animvfi_pipeline.data.atd12k import ATD12KSource
from animvfi_pipeline.data.h5store import IngestionConfig, IngestionPlan, TripletStore
from animvfi_pipeline.data.video_ingest import VideoIngestionConfig, VideoIngestionPlan
from animvfi_pipeline.data.video_source import VideoFolder

logger = logging.getLogger(__name__)


def prepare_raw_dataset(raw_params: dict[str, Any]) -> Any:
    """Say what the raw ATD-12K folder should hold.

    Args:
        raw_params: ``raw_data`` parameters; ``source`` is "synthetic" (render the embedded
            dataset from ``synthetic``, the SyntheticConfig fields) or "existing" (real data).

    Returns:
        A SyntheticConfig to generate, or "existing"; the ATD12KFolderDataset acts on it.
    """
    source = raw_params.get("source", "synthetic")
    if source == "existing":
        return "existing"
    if source != "synthetic":
        raise ValueError(f"raw_data.source must be 'synthetic' or 'existing', got {source!r}")
    from animvfi_pipeline.data.synthetic import SyntheticConfig

    spec = dict(raw_params.get("synthetic") or {})
    for key in ("extra_times", "level_weights"):  # YAML gives lists; the config holds tuples
        if key in spec:
            spec[key] = tuple(spec[key])
    return SyntheticConfig(**spec)


def plan_ingestion(atd12k_raw: ATD12KSource | VideoFolder,
                   ingestion_params: dict[str, Any]) -> IngestionPlan | VideoIngestionPlan:
    """Decide what goes into the triplet store and how.

    Args:
        atd12k_raw: the scanned raw folder: ATD-12K triplets, or clips (``--env video``).
        ingestion_params: ``ingestion`` parameters (the IngestionConfig fields, or the
            VideoIngestionConfig fields for clips).

    Returns:
        An ingestion plan; saving it as ``triplet_store`` writes the HDF5 file.
    """
    params = dict(ingestion_params)
    progress = bool(params.pop("progress", True))
    if isinstance(atd12k_raw, VideoFolder):
        logger.info("Planning ingestion of %d clips from %s", len(atd12k_raw), atd12k_raw.root)
        return VideoIngestionPlan(atd12k_raw, VideoIngestionConfig(**params), progress=progress)
    config = IngestionConfig(**params)
    logger.info("Planning ingestion of %d triplets from %s", len(atd12k_raw.records), atd12k_raw.root)
    return IngestionPlan(atd12k_raw.records, config, source_root=atd12k_raw.root, progress=progress)


def summarize_store(triplet_store: TripletStore) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Describe the ingested store: its metadata table and a short report.

    Returns:
        triplet_metadata: one row per stored triplet (TripletStore.meta).
        ingestion_report: counts per split / level / flow source, sizes, and every skipped
            triplet with the file and the reason.
    """
    meta = triplet_store.meta
    report = {
        "store": str(triplet_store.path),
        "source_root": triplet_store.source_root,
        "n_triplets": len(triplet_store),
        "width": triplet_store.width,
        "height": triplet_store.height,
        "extra_times": list(triplet_store.extra_times),
        "splits": {s: int((meta["split"] == s).sum()) for s in ("train", "val", "test")},
        "clips": {s: int(meta.loc[meta["split"] == s, "clip"].nunique()) for s in ("train", "val", "test")},
        "levels": {str(k): int(v) for k, v in sorted(Counter(meta["level"].tolist()).items())},
        "flow_sources": dict(sorted(Counter(meta["flow_source"].tolist()).items())),
        "dropped": triplet_store.dropped,  # video stores: triplets left out by each drop rule
        "n_skipped": len(triplet_store.skipped),
        "skipped": triplet_store.skipped,
        "ingestion_config": triplet_store.ingestion_config,
    }
    if triplet_store.skipped:
        logger.warning("%d triplets were skipped; see ingestion_report", len(triplet_store.skipped))
    return meta, report


def store_metadata(triplet_store: TripletStore) -> pd.DataFrame:
    """The metadata table alone, for the Parquet copy (keeps dtypes that CSV loses)."""
    return triplet_store.meta
