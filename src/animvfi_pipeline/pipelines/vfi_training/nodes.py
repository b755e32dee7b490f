"""Thin node over the training library; see docs/training.md for the knobs."""
from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from animvfi_pipeline.training.distributed import launch
from animvfi_pipeline.training.tasks import fit_vfi, flow_that_helps
from animvfi_pipeline.training.tracking import get_logger

log = logging.getLogger(__name__)


def train_vfi(
    triplet_store: Any,
    flownet_model: dict,
    vfi_model_params: dict[str, Any],
    vfi_training_params: dict[str, Any],
) -> tuple[dict, pd.DataFrame]:
    """Train the interpolator around the pretrained flow network, choosing the epoch by validation PSNR.

    Args:
        triplet_store: the ``TripletStore`` written by data_ingestion.
        flownet_model: the flow pretraining checkpoint dict.
        vfi_model_params: ``VFIConfig`` fields except ``flow`` (taken from the checkpoint);
            ``freeze_flow`` chooses between a frozen and a fine-tuned flow network.
        vfi_training_params: ``nproc``, ``data`` (crop, augment, times), ``loss`` (term weights),
            ``perceptual_weights`` (VGG19 file or null), ``loop`` (``TrainConfig`` fields), ``tracking``,
            ``flow_check`` (start from DIS instead of the pretrained flow when that interpolates
            the validation split better; ``training.tasks.flow_that_helps``), ``init_from`` (null, or
            a trained ``vfi.pt`` / MLflow model URI to fine-tune: its config and flow network are
            used, ``flownet_model`` and ``flow_check`` are not).

    Returns:
        The best epoch's checkpoint dict and the per-epoch history.
    """
    if vfi_training_params.get("init_from") is not None:
        log.info("fine-tuning %s: its own flow network is fine-tuned, the flow check is skipped",
                 vfi_training_params["init_from"])
    elif vfi_training_params.get("flow_check", False):
        flownet_model, figures = flow_that_helps(triplet_store, flownet_model, vfi_model_params)
        get_logger(vfi_training_params.get("tracking", "auto")).log_metrics(
            {f"vfi/flow_check_{k}": v for k, v in figures.items()}, 0)
    result = launch(fit_vfi, vfi_training_params.get("nproc", 1), triplet_store, flownet_model,
                    vfi_model_params, vfi_training_params)
    log.info("VFI training: best validation PSNR %.2f dB at epoch %d", result.best_metric, result.best_epoch)
    return result.checkpoint, result.history
