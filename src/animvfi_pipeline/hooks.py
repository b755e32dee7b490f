"""Project hooks: what goes to MLflow beyond parameters (kedro-mlflow) and training curves (nodes).

- after the evaluation node: every number of metrics.json as an MLflow metric (`eval/<method>/<metric>`);
- after the VFI training node: the trained interpolator as an MLflow PyTorch model, with an input example.

Figures, the Markdown report and the CSV tables reach MLflow through kedro-mlflow's
MlflowArtifactDataset in the catalog. Every hook is a no-op when no MLflow run is active
(for example a plain KedroSession in a test without kedro-mlflow).
"""
from __future__ import annotations

import logging
import math
from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.pipeline import Node

logger = logging.getLogger(__name__)


def _active_run():
    try:
        import mlflow
    except ImportError:  # pragma: no cover - mlflow is a dependency
        return None
    return mlflow.active_run()


def flatten_metrics(metrics: dict[str, dict[str, Any]], prefix: str = "eval") -> dict[str, float]:
    """{method: {metric: value}} -> {"eval/method/metric": value}, finite numbers only."""
    flat = {}
    for method, values in metrics.items():
        for name, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                flat[f"{prefix}/{method}/{name}"] = float(value)
    return flat


class MlflowModelAndMetricsHook:
    @hook_impl
    def after_node_run(self, node: Node, outputs: dict[str, Any]) -> None:
        if _active_run() is None:
            return
        import mlflow

        if "evaluation_metrics" in outputs:
            mlflow.log_metrics(flatten_metrics(outputs["evaluation_metrics"]))
        if "vfi_model" in outputs:
            self._log_vfi_model(outputs["vfi_model"])

    @staticmethod
    def _log_vfi_model(ckpt: dict) -> None:
        import mlflow.pytorch

        import numpy as np

        from animvfi_pipeline.models.checkpoint import build_vfi_model
        from animvfi_pipeline.models.serving import VFIServingModule

        model = VFIServingModule(build_vfi_model(ckpt).eval())
        example = np.random.default_rng(0).random((1, 6, 64, 64), dtype=np.float32)
        # Pickle, not MLflow 3's default pt2: torch.export cannot trace the OpenCV DIS call of a
        # flow net with init="dis". Loading needs this package installed (as serving it does).
        mlflow.pytorch.log_model(model, name="vfi_model", input_example=example, serialization_format="pickle")
        logger.info("Logged the VFI model to MLflow as 'vfi_model'")
