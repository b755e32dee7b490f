"""Project hooks: one run at a time per project, and what goes to MLflow beyond parameters
(kedro-mlflow) and training curves (nodes).

- around every pipeline run: the project's run lock (run_lock.py), so that a second `kedro run`
  in the same clone is refused at once instead of writing the same files;

- after the evaluation node: every number of metrics.json as an MLflow metric (`eval/<method>/<metric>`);
- after the VFI training node: the trained interpolator as an MLflow PyTorch model, with an input example.

Figures, the Markdown report and the CSV tables reach MLflow through kedro-mlflow's
MlflowArtifactDataset in the catalog. Every hook is a no-op when no MLflow run is active
(for example a plain KedroSession in a test without kedro-mlflow).
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.pipeline import Node

from animvfi_pipeline.run_lock import RunLock

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


class ProjectRunLockHook:
    """Holds ``<project>/<lock_path>`` from before the run starts until it has ended.

    tryfirst: the lock is taken before kedro-mlflow opens an MLflow run, so a refused run leaves
    no trace there; trylast on the way out: it is released after kedro-mlflow has closed its run.
    """

    def __init__(self, lock_path: str):
        self.lock_path = lock_path
        self._lock: RunLock | None = None

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, run_params: dict[str, Any]) -> None:
        path = Path(run_params.get("project_path") or Path.cwd()) / self.lock_path
        if self._lock is not None and self._lock.path != path:
            self._lock.release()
        if self._lock is None or self._lock.path != path:
            self._lock = RunLock(path)
        self._lock.acquire()

    @hook_impl(trylast=True)
    def after_pipeline_run(self) -> None:
        self._release()

    @hook_impl(trylast=True)
    def on_pipeline_error(self) -> None:
        self._release()

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()


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
