"""The one small logging interface training talks to: MLflow when a run is available, else nothing.

Where the runs go (tracking URI, experiment) is configured by kedro-mlflow or the environment,
never here. Metric names carry their stage: ``flow/train_loss``, ``vfi/val_psnr``.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)


class MetricLogger(Protocol):
    def log_params(self, params: dict[str, Any]) -> None: ...

    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...

    def log_artifact(self, path: str | Path) -> None: ...

    def log_figure(self, fig: Any, name: str) -> None: ...


class NullLogger:
    """Accepts everything, records nothing (tests, non-zero DDP ranks, no MLflow run)."""

    active = False  # callers may skip work (figures) whose only use is to be logged

    def log_params(self, params: dict[str, Any]) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        pass

    def log_artifact(self, path: str | Path) -> None:
        pass

    def log_figure(self, fig: Any, name: str) -> None:
        pass


def _current_run_id() -> str | None:
    import mlflow

    run = mlflow.active_run()
    if run is not None:
        return run.info.run_id
    return os.environ.get("MLFLOW_RUN_ID") or None


class MlflowLogger:
    """Logs into MLflow's active run (kedro-mlflow starts one per ``kedro run``), or into the run
    named by ``MLFLOW_RUN_ID`` (how DDP worker processes find their parent's run).

    With neither, it is a no-op and says so once. The run is resolved when the logger is made;
    the client API is used so that worker processes never start or end runs themselves.
    """

    def __init__(self) -> None:
        from mlflow.tracking import MlflowClient

        self.run_id = _current_run_id()
        self._client = MlflowClient() if self.run_id else None
        if self.run_id is None:
            log.info("No active MLflow run and no MLFLOW_RUN_ID: training metrics are not tracked")

    @property
    def active(self) -> bool:
        return self._client is not None

    def log_params(self, params: dict[str, Any]) -> None:
        if self._client is None:
            return
        from mlflow.entities import Param

        # MLflow caps parameter values at a few thousand characters; flat and short is readable anyway.
        items = [Param(k, str(v)[:500]) for k, v in _flatten(params).items()]
        try:
            for i in range(0, len(items), 100):  # log_batch takes at most 100 params per call
                self._client.log_batch(self.run_id, params=items[i : i + 100])
        except Exception as exc:  # MLflow refuses to change a logged param (e.g. a rerun in one run)
            log.warning("could not log training params to MLflow run %s: %s", self.run_id, exc)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        if self._client is None or not metrics:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, int(step)) for k, v in metrics.items()]
        self._client.log_batch(self.run_id, metrics=items)

    def log_artifact(self, path: str | Path) -> None:
        if self._client is not None:
            self._client.log_artifact(self.run_id, str(path))

    def log_figure(self, fig: Any, name: str) -> None:
        if self._client is not None:
            self._client.log_figure(self.run_id, fig, name)


def get_logger(kind: str = "auto") -> MetricLogger:
    """``"mlflow"``, ``"none"``, or ``"auto"``: MLflow if it is installed and a run is available."""
    if kind == "none":
        return NullLogger()
    if kind not in ("auto", "mlflow"):
        raise ValueError(f"unknown metric logger {kind!r}; expected 'auto', 'mlflow' or 'none'")
    try:
        import mlflow  # noqa: F401
    except ImportError:
        if kind == "mlflow":
            raise
        log.info("MLflow is not installed: training metrics are not tracked")
        return NullLogger()
    return MlflowLogger()


def run_env() -> dict[str, str]:
    """Environment that lets child processes (DDP workers) log into this process's MLflow run."""
    try:
        import mlflow
    except ImportError:
        return {}
    run_id = _current_run_id()
    if run_id is None:
        return {}
    return {"MLFLOW_RUN_ID": run_id, "MLFLOW_TRACKING_URI": mlflow.get_tracking_uri()}


def _flatten(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat
