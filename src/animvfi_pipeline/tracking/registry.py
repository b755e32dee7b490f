"""The VFI model in MLflow: log it as a LoggedModel (a pyfunc, pyfunc_model.py), find it again
from its weights, register it as a new version and move the alias when the gate says so.

A model's identity is the digest of its weights (``weights_digest``), tagged on the LoggedModel:
under ``dvc repro`` training and evaluation are separate processes and runs, and the evaluation
finds the model the training stage logged by that tag, so its metrics land on the same model.
"""
from __future__ import annotations

import hashlib
import logging
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import torch
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from animvfi_pipeline.models.checkpoint import save_checkpoint
from animvfi_pipeline.tracking import pyfunc_model
from animvfi_pipeline.tracking.gate import GateResult

log = logging.getLogger(__name__)

MODEL_ARTIFACT_NAME = "vfi_model"
DIGEST_TAG = "animvfi.weights_digest"
TRAINING_STATE = ("optimizer", "scheduler", "scaler", "rng", "history")


def weights_digest(ckpt: dict) -> str:
    """SHA-256 of the state dict (names, dtypes, shapes, values): the same weights, the same digest,
    however and wherever the checkpoint was saved."""
    digest = hashlib.sha256()
    for name, tensor in sorted(ckpt["model"].items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def _requirements() -> list[str]:
    # Written out rather than inferred: inference loads the model in a subprocess (slow), and the
    # local env manager never installs them anyway. The project itself must be installed.
    import numpy
    import PIL

    return [f"mlflow=={mlflow.__version__}", f"torch=={torch.__version__.split('+')[0]}",
            f"numpy=={numpy.__version__}", f"pillow=={PIL.__version__}", "opencv-python-headless"]


def log_vfi_model(ckpt: dict, max_pixels: int = pyfunc_model.DEFAULT_MAX_PIXELS) -> str:
    """Log ``ckpt`` to the active run as the pyfunc LoggedModel ``vfi_model``; return its model_id."""
    digest = weights_digest(ckpt)
    with tempfile.TemporaryDirectory(prefix="animvfi-model-") as tmp:
        path = Path(tmp) / "vfi.pt"
        # The weights and their config, not the optimizer and RNG states: a third of the size.
        save_checkpoint(path, {k: v for k, v in ckpt.items() if k not in TRAINING_STATE})
        info = mlflow.pyfunc.log_model(
            name=MODEL_ARTIFACT_NAME,
            python_model=pyfunc_model.VFIPyfuncModel(),
            artifacts={"checkpoint": str(path)},
            signature=pyfunc_model.signature(),
            model_config={"max_pixels": int(max_pixels), "device": "cpu"},
            pip_requirements=_requirements(),
            tags={DIGEST_TAG: digest},
        )
    log.info("Logged the VFI model to MLflow as %r (model_id %s)", MODEL_ARTIFACT_NAME, info.model_id)
    return info.model_id


def find_logged_model(ckpt: dict, experiment_id: str) -> str | None:
    """model_id of the newest LoggedModel of ``experiment_id`` with these weights, or None."""
    models = mlflow.search_logged_models(
        experiment_ids=[experiment_id], filter_string=f"tags.`{DIGEST_TAG}` = '{weights_digest(ckpt)}'",
        order_by=[{"field_name": "creation_time", "ascending": False}], max_results=1, output_format="list",
    )
    return models[0].model_id if models else None


def load_registered_model(uri: str) -> Any:
    """The VFIModel behind a pyfunc URI (``models:/animvfi-vfi@champion``, ``models:/<model_id>``...)."""
    return mlflow.pyfunc.load_model(uri).unwrap_python_model().model


def load_alias(name: str, alias: str) -> tuple[Any, str] | None:
    """(model, version) holding ``alias`` in registered model ``name``, or None if there is none."""
    client = MlflowClient()
    try:
        version = client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise
    return load_registered_model(f"models:/{name}@{alias}"), str(version.version)


def register_with_gate(model_id: str, gate: GateResult, name: str, alias: str) -> str:
    """Register ``model_id`` as a new version of ``name``, tag it (and the active run) with the gate's
    numbers and decision, and point ``alias`` at it only if the gate promoted it. Returns the version."""
    client = MlflowClient()
    version = str(mlflow.register_model(f"models:/{model_id}", name).version)
    decision = "promoted" if gate.promote else "withheld"
    tags = {
        "gate.decision": decision,
        "gate.reason": gate.reason,
        "gate.metric": f"{gate.metric} on {gate.n_triplets} {gate.split} triplets",
        f"gate.new_{gate.metric}": f"{gate.new:.4f}",
        f"gate.prior_{gate.metric}": f"{gate.prior:.4f}",
        f"gate.champion_{gate.metric}": "none" if gate.champion is None else f"{gate.champion:.4f}",
        "gate.champion_version": gate.champion_version or "none",
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    if gate.promote:
        client.set_registered_model_alias(name, alias, version)
    run = mlflow.active_run()
    if run is not None:
        mlflow.set_tags({**tags, "registry.model": name, "registry.version": version})
        scores = {f"gate/new_{gate.metric}": gate.new, f"gate/prior_{gate.metric}": gate.prior,
                  "gate/promoted": float(gate.promote)}
        if gate.champion is not None:
            scores[f"gate/champion_{gate.metric}"] = gate.champion
        mlflow.log_metrics(scores, model_id=model_id)
    log.info("Registered %s version %s: %s (%s)", name, version, decision, gate.reason)
    return version


def champion_loader(name: str, alias: str):
    """A ``load_champion`` for ``gate.run_gate``: the registry's champion when an MLflow run is
    active (the registry is that run's), else nothing (a plain session gates against the prior)."""
    def load() -> tuple[Any, str] | None:
        return load_alias(name, alias) if mlflow.active_run() is not None else None

    return load
