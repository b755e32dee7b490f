"""Kedro dataset for the HDF5 triplet store: saves an IngestionPlan, loads a lazy TripletStore."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset

from animvfi_pipeline.data.h5store import IngestionPlan, TripletStore
from animvfi_pipeline.data.video_ingest import VideoIngestionPlan
from animvfi_pipeline.errors import DataError


class TripletStoreDataset(AbstractDataset[IngestionPlan | VideoIngestionPlan, TripletStore]):
    """``save(plan)`` streams the plan's triplets (ATD-12K records or clips) into ``filepath`` atomically;
    ``load()`` returns a `TripletStore` that reads triplets on demand, never the whole array.

    Example catalog entry::

        triplet_store:
          type: animvfi_pipeline.datasets.triplet_store.TripletStoreDataset
          filepath: data/02_intermediate/triplets.h5
    """

    def __init__(self, filepath: str, metadata: dict | None = None):
        self._filepath = Path(filepath)
        self.metadata = metadata

    def load(self) -> TripletStore:
        return TripletStore(self._filepath)

    def save(self, data: IngestionPlan | VideoIngestionPlan) -> None:
        if not isinstance(data, (IngestionPlan, VideoIngestionPlan)):
            raise TypeError(f"expected an IngestionPlan or a VideoIngestionPlan, got {type(data).__name__}")
        data.write(self._filepath)

    def _exists(self) -> bool:
        # Only a complete store counts; a missing or interrupted one means "ingest again".
        try:
            TripletStore(self._filepath)
        except DataError:
            return False
        return True

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}
