"""Where a trained model comes from: a checkpoint file or an MLflow model URI, resolved in one place.

``animvfi interpolate --model`` and fine-tuning (``init_from`` in the training parameters) both
go through :func:`load_vfi_checkpoint`, so a model that interpolates is a model that fine-tunes.
MLflow URIs resolve against the tracking store MLflow is configured with (kedro-mlflow sets the
project's ``mlflow.db`` during ``kedro run``; the CLI sets it before calling this).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from animvfi_pipeline.errors import CheckpointError
from animvfi_pipeline.models.checkpoint import load_checkpoint, make_checkpoint

log = logging.getLogger(__name__)

MLFLOW_URI_SCHEMES = ("models:/", "runs:/")


def is_mlflow_uri(text: str | Path) -> bool:
    return str(text).startswith(MLFLOW_URI_SCHEMES)


def load_vfi_checkpoint(source: str | Path) -> dict[str, Any]:
    """The VFI checkpoint dict (config and weights) at ``source``: a ``vfi.pt`` path or an MLflow
    URI (``models:/animvfi-vfi@champion``, ``models:/animvfi-vfi/3``, ``runs:/<id>/vfi_model``).
    CheckpointError naming ``source`` if it is missing or not one of ours."""
    if not is_mlflow_uri(source):
        return load_checkpoint(Path(source), "animvfi.vfi")
    model = _registered_model(str(source))
    return make_checkpoint("animvfi.vfi", model, model.cfg.to_dict())


def load_flow_checkpoint(source: str | Path) -> dict[str, Any]:
    """A flow network checkpoint: a ``flownet.pt`` path, or the flow network inside the VFI model
    an MLflow URI names (the registry holds VFI models only)."""
    if not is_mlflow_uri(source):
        return load_checkpoint(Path(source), "animvfi.flownet")
    model = _registered_model(str(source))
    return make_checkpoint("animvfi.flownet", model.flownet, model.cfg.flow.to_dict())


def _registered_model(uri: str):
    from animvfi_pipeline.tracking.registry import load_registered_model

    try:
        return load_registered_model(uri)
    except Exception as exc:  # MlflowException (no such model/alias), or not one of our pyfunc models
        raise CheckpointError(uri, f"cannot load this MLflow model: {exc}") from exc


def load_starting_model(checkpoint: dict[str, Any]):
    """The VFI model a fine-tuned ``checkpoint`` started from (its ``init_from`` record), or None:
    when it was trained from scratch, or when its start can no longer be found as it was (moved,
    or overwritten -- e.g. by the fine-tuned model itself when both use one path); a warning says
    which, since evaluation can still score everything else."""
    from animvfi_pipeline.models.checkpoint import build_vfi_model
    from animvfi_pipeline.tracking.registry import weights_digest

    record = checkpoint.get("init_from")
    if not record:
        return None
    source = record["source"]
    try:
        start = load_vfi_checkpoint(source)
    except CheckpointError as exc:
        log.warning("the starting model of this fine-tuned model is not scored: %s", exc)
        return None
    if weights_digest(start) != record["weights_digest"]:
        log.warning("the starting model of this fine-tuned model is not scored: %s now holds other weights "
                    "than the ones fine-tuning started from (overwritten?)", source)
        return None
    return build_vfi_model(start, source=source)
