"""What differs between the two training stages, bundled as a Task for the one loop."""
from __future__ import annotations

from typing import Any, Protocol

import torch


class Task(Protocol):
    name: str  # metric prefix and progress label: "flow" | "vfi"
    metric: str  # validation metric that picks the best epoch, e.g. "epe"
    mode: str  # "min" | "max" for that metric
    val_metrics: tuple[str, ...]  # keys evaluate() returns, besides "count"

    def build_model(self) -> torch.nn.Module: ...

    def loss(self, model: torch.nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]: ...

    def evaluate(self, model: torch.nn.Module, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Per-sample metric SUMS over the batch and its sample ``count``, so that they add up
        exactly across batches and ranks."""
        ...

    def make_checkpoint(self, model: torch.nn.Module) -> dict[str, Any]: ...
