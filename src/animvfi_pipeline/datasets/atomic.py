"""kedro-datasets' file datasets, saved atomically: to ``<name>.tmp-<pid>`` beside the target,
then renamed, like every file this project writes itself.

kedro-datasets open the final path for writing, so a full disk or a killed run leaves a truncated
``metrics.json`` where the previous good one was. These subclasses change only where ``save``
writes; loading, arguments and kedro-mlflow's wrapping (``MlflowArtifactDataset``) are untouched.
Local files only: for any other protocol (s3://, ...) they save as their parent class does.
"""
from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from kedro_datasets.json import JSONDataset as _JSONDataset
from kedro_datasets.matplotlib import MatplotlibDataset as _MatplotlibDataset
from kedro_datasets.pandas import CSVDataset as _CSVDataset
from kedro_datasets.pandas import ParquetDataset as _ParquetDataset
from kedro_datasets.text import TextDataset as _TextDataset

from animvfi_pipeline.utils_io import atomic_path


class _AtomicSave:
    _filepath: PurePosixPath
    _protocol: str

    def save(self, data: Any) -> None:
        if getattr(self, "_protocol", "file") != "file" or getattr(self, "_version", None) is not None:
            super().save(data)  # type: ignore[misc]
            return
        final = self._filepath
        with atomic_path(Path(final)) as tmp:
            self._filepath = PurePosixPath(tmp)
            try:
                super().save(data)  # type: ignore[misc]
            finally:
                self._filepath = final


class JSONDataset(_AtomicSave, _JSONDataset):
    """``json.JSONDataset``, saved atomically."""


class CSVDataset(_AtomicSave, _CSVDataset):
    """``pandas.CSVDataset``, saved atomically."""


class ParquetDataset(_AtomicSave, _ParquetDataset):
    """``pandas.ParquetDataset``, saved atomically."""


class TextDataset(_AtomicSave, _TextDataset):
    """``text.TextDataset``, saved atomically."""


class MatplotlibDataset(_AtomicSave, _MatplotlibDataset):
    """``matplotlib.MatplotlibDataset`` (one figure per file), saved atomically."""
