"""Kedro dataset for model checkpoints: plain dicts (models/checkpoint.py), saved atomically."""
from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io import AbstractDataset

from animvfi_pipeline.errors import CheckpointError
from animvfi_pipeline.models.checkpoint import KINDS, load_checkpoint, save_checkpoint


class TorchCheckpointDataset(AbstractDataset[dict, dict]):
    """``flownet_model`` / ``vfi_model`` in the catalog.

    load: the validated checkpoint dict (``torch.load(weights_only=True)``); CheckpointError
    naming the file if it is missing, corrupt or of another kind.
    save: the dict, written to a temporary name and renamed, so a crash never leaves half a file.

    kind: ``animvfi.flownet`` or ``animvfi.vfi``; a dict of another kind is refused on save too.
    """

    def __init__(self, filepath: str, kind: str, metadata: dict[str, Any] | None = None):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {sorted(KINDS)}, not {kind!r}")
        self._filepath = PurePosixPath(filepath)
        self._kind = kind
        self.metadata = metadata

    def load(self) -> dict:
        return load_checkpoint(Path(self._filepath), self._kind)

    def save(self, data: dict) -> None:
        if not isinstance(data, dict) or data.get("kind") != self._kind:
            found = data.get("kind") if isinstance(data, dict) else type(data).__name__
            raise CheckpointError(self._filepath, f"refusing to save a {found!r} checkpoint as {self._kind}")
        save_checkpoint(Path(self._filepath), data)

    def _exists(self) -> bool:
        return Path(self._filepath).is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "kind": self._kind}
