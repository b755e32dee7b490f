"""Kedro dataset for an ATD-12K-layout folder: real data (read only) or the synthetic one."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from kedro.io import AbstractDataset

from animvfi_pipeline.data.atd12k import ATD12KSource
from animvfi_pipeline.errors import DataError


class ATD12KFolderDataset(AbstractDataset[Any, ATD12KSource]):
    """``load()`` scans the folder into an `ATD12KSource` (paths only, no pixels).

    ``save(spec)``: a ``SyntheticConfig`` renders the synthetic dataset into the folder (a no-op
    when it already holds that exact spec); ``"existing"`` only checks that the folder is there,
    so real data is never written to.

    Example catalog entry::

        atd12k_raw:
          type: animvfi_pipeline.datasets.atd12k_folder.ATD12KFolderDataset
          path: data/01_raw/atd12k
    """

    def __init__(self, path: str, splits: Sequence[str] = ("train", "test"), metadata: dict | None = None):
        self._path = Path(path)
        self._splits = tuple(splits)
        self.metadata = metadata

    def load(self) -> ATD12KSource:
        return ATD12KSource.scan(self._path, self._splits)

    def save(self, data: Any) -> None:
        if isinstance(data, str) and data == "existing":
            if not self._path.is_dir():
                raise DataError(
                    self._path,
                    "ATD-12K folder does not exist; link or copy the dataset here (see docs/data.md)",
                )
            return
        # Imported here: the generator is only needed when something is generated.
        from animvfi_pipeline.data.synthetic import SyntheticConfig, write_synthetic_atd12k

        if not isinstance(data, SyntheticConfig):
            raise TypeError(f"expected a SyntheticConfig or 'existing', got {type(data).__name__}")
        write_synthetic_atd12k(self._path, data)

    def _exists(self) -> bool:
        return self._path.is_dir()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path), "splits": self._splits}
