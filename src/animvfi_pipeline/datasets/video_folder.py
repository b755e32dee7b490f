"""Kedro dataset for a folder of a studio's own clips (videos and folders of frames), read only."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset

from animvfi_pipeline.data.video_source import VideoFolder
from animvfi_pipeline.errors import DataError


class VideoFolderDataset(AbstractDataset[Any, VideoFolder]):
    """``load()`` lists the clips under ``path`` recursively (paths only, nothing decoded).
    ``save("existing")`` only checks that the folder is there: clips are never written to.

    Example catalog entry::

        atd12k_raw:
          type: animvfi_pipeline.datasets.video_folder.VideoFolderDataset
          path: data/01_raw/videos
    """

    def __init__(self, path: str, metadata: dict | None = None):
        self._path = Path(path)
        self.metadata = metadata

    def load(self) -> VideoFolder:
        return VideoFolder.scan(self._path)

    def save(self, data: Any) -> None:
        if data != "existing":
            raise TypeError(f"a video folder is only read; raw_data.source must be 'existing', got {data!r}")
        if not self._path.is_dir():
            raise DataError(self._path, "video folder does not exist; put your clips there (see docs/video.md)")

    def _exists(self) -> bool:
        return self._path.is_dir()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path)}
