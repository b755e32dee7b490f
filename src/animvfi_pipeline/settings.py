"""Kedro project settings.

Telemetry of every tool we use is off here, before any of them is imported by a run:
Kedro reads the committed `.telemetry` file (consent: false), MLflow and the rest honour
DO_NOT_TRACK / MLFLOW_DISABLE_TELEMETRY. DVC's is off in `.dvc/config`.
"""
import os

for _var, _value in {
    "DO_NOT_TRACK": "1",
    "KEDRO_DISABLE_TELEMETRY": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
}.items():
    os.environ.setdefault(_var, _value)

from kedro.config import OmegaConfigLoader  # noqa: E402

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
}

from animvfi_pipeline.hooks import (  # noqa: E402
    MlflowLineageHook, MlflowModelAndMetricsHook, ProjectRunLockHook,
)

# The run lock, relative to the project root (docs/reliability.md).
RUN_LOCK_PATH = "data/.run.lock"
# The lock first: a refused second run must not touch MLflow at all.
HOOKS = (ProjectRunLockHook(RUN_LOCK_PATH), MlflowModelAndMetricsHook(), MlflowLineageHook())
