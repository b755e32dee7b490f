"""Project hooks: one run at a time per project, and what goes to MLflow beyond parameters
(kedro-mlflow) and training curves (nodes).

- around every pipeline run: the project's run lock (run_lock.py), so that a second `kedro run`
  in the same clone is refused at once instead of writing the same files;

MlflowLineageHook, once the run is open:
- a name a person can scan (env, backbone, flow init, short commit), tags for the git commit and
  dirty flag, the Kedro env, the DVC lock hashes of data and weights, and the owning process;
- closes this machine's runs whose process died (left RUNNING) as KILLED, with a note;
- under ``dvc repro`` / ``dvc exp run``: nests each stage run under one parent run per pipeline run;
- logs the triplet store as the run's dataset input the first time a node reads it.

MlflowModelAndMetricsHook, after nodes:
- the VFI training node: the trained interpolator as a pyfunc LoggedModel (tracking/pyfunc_model.py);
- the evaluation node: every number of metrics.json as ``eval/<method>/<metric>``, logged against
  that LoggedModel (found again by its weights under ``dvc repro``, where it was logged by an
  earlier stage);
- the promotion gate node: a new registered version, its gate tags, the alias if it won.

Figures, the Markdown report and the CSV tables reach MLflow through kedro-mlflow's
MlflowArtifactDataset in the catalog. Every hook is a no-op when no MLflow run is active
(for example a plain KedroSession in a test without kedro-mlflow).
"""
from __future__ import annotations

import logging
import math
import os
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
    def __init__(self) -> None:
        self._params: dict[str, Any] = {}
        self._model_ids: dict[str, str] = {}  # weights digest -> model_id logged by this process

    @hook_impl
    def after_context_created(self, context) -> None:
        self._params = dict(context.params)

    @hook_impl
    def after_node_run(self, node: Node, inputs: dict[str, Any], outputs: dict[str, Any]) -> None:
        if _active_run() is None:
            return
        import mlflow

        if "vfi_model" in outputs:
            self._model_id(outputs["vfi_model"])
        if "evaluation_metrics" in outputs:
            model_id = self._model_id(inputs["vfi_model"])
            mlflow.log_metrics(flatten_metrics(outputs["evaluation_metrics"]), model_id=model_id)
        if "promotion_gate" in outputs:
            from animvfi_pipeline.tracking.gate import GateParams, GateResult
            from animvfi_pipeline.tracking.registry import register_with_gate

            params = GateParams(**self._params.get("promotion", {}))
            model_id = self._model_id(inputs["vfi_model"])
            register_with_gate(model_id, GateResult(**outputs["promotion_gate"]), params.model_name, params.alias)

    def _model_id(self, ckpt: dict) -> str:
        """The LoggedModel of these weights: logged by this process, by an earlier stage (found by
        its weights digest), or, for a vfi.pt that was never logged, now."""
        import mlflow

        from animvfi_pipeline.tracking import registry

        digest = registry.weights_digest(ckpt)
        if digest not in self._model_ids:
            model_id = registry.find_logged_model(ckpt, mlflow.active_run().info.experiment_id)
            if model_id is None:
                max_pixels = (self._params.get("serving") or {}).get("max_pixels")
                model_id = registry.log_vfi_model(ckpt, **({"max_pixels": max_pixels} if max_pixels else {}))
            self._model_ids[digest] = model_id
        return self._model_ids[digest]


class MlflowLineageHook:
    def __init__(self) -> None:
        self._params: dict[str, Any] = {}
        self._env = "local"
        self._project_path = Path.cwd()
        self._logged_inputs: set[tuple[str, str]] = set()
        self._parent_run_id: str | None = None

    @hook_impl
    def after_context_created(self, context) -> None:
        self._params = dict(context.params)
        self._env = context.env or "local"
        self._project_path = Path(context.project_path)

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any]) -> None:
        # kedro-mlflow (a plugin, so its hooks run before the project's) has opened the run by now.
        run = _active_run()
        if run is None:
            return
        import mlflow
        from mlflow.tracking import MlflowClient

        from animvfi_pipeline.tracking import lineage, stale_runs

        client = MlflowClient()
        stale_runs.close_orphaned_runs(client, run.info.experiment_id, current_run_id=run.info.run_id)
        git = lineage.git_state(self._project_path)
        names = run_params.get("pipeline_names") or run_params.get("pipeline_name") or "__default__"
        pipeline = "+".join(names) if isinstance(names, (list, tuple)) else str(names)
        group = lineage.dvc_group(os.environ)
        tags = {
            **stale_runs.owner_tags(),
            **git,
            **lineage.dvc_lock_hashes(self._project_path / "dvc.lock"),
            **group,
            "kedro.env": self._env,
            "kedro.pipeline": pipeline,
            "mlflow.runName": lineage.run_name(self._env, self._params, git["git.commit"], git["git.dirty"], pipeline),
        }
        if group:
            self._parent_run_id = self._pipeline_parent(client, run, group, git)
            tags["mlflow.parentRunId"] = self._parent_run_id
        mlflow.set_tags(tags)

    def _pipeline_parent(self, client, run, group: dict[str, str], git: dict[str, str]) -> str:
        """The parent run of this DVC pipeline run: found by its id, or created by the first stage."""
        group_id = group["animvfi.pipeline_run_id"]
        found = client.search_runs([run.info.experiment_id], max_results=1, filter_string=(
            f"tags.`animvfi.pipeline_run_id` = '{group_id}' and tags.`animvfi.role` = 'pipeline'"))
        if found:
            return found[0].info.run_id
        label = f"dvc exp {group['dvc.exp_name']}" if "dvc.exp_name" in group else "dvc repro"
        parent = client.create_run(run.info.experiment_id, run_name=f"{label} {git['git.commit'][:7]}", tags={
            **{k: v for k, v in group.items() if k != "dvc.stage"}, **git,
            "animvfi.role": "pipeline", "kedro.env": self._env,
        })
        # Closed at once, and closed again (end time moved) by every stage that finishes: no
        # process owns it, so nothing could otherwise close it.
        client.set_terminated(parent.info.run_id, "FINISHED")
        return parent.info.run_id

    @hook_impl
    def after_pipeline_run(self) -> None:
        self._close_parent("FINISHED")

    @hook_impl
    def on_pipeline_error(self) -> None:
        self._close_parent("FAILED")

    def _close_parent(self, status: str) -> None:
        if self._parent_run_id is None:
            return
        from mlflow.tracking import MlflowClient

        MlflowClient().set_terminated(self._parent_run_id, status)

    @hook_impl
    def before_node_run(self, node: Node, inputs: dict[str, Any]) -> None:
        run = _active_run()
        store = inputs.get("triplet_store")
        if run is None or store is None or not hasattr(store, "path"):
            return
        key = (run.info.run_id, str(store.path))
        if key in self._logged_inputs:
            return
        import mlflow

        from animvfi_pipeline.tracking import lineage

        dataset = lineage.store_dataset(store, lineage.file_md5(store.path))
        context = "evaluation" if node.name.startswith(("evaluate", "promotion")) else "training"
        mlflow.log_input(dataset, context=context,
                         tags={f"{split}_triplets": str(n) for split, n in lineage.split_counts(store).items()})
        self._logged_inputs.add(key)
