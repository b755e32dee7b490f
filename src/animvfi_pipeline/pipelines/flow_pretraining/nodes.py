"""Thin node over the training library; see docs/training.md for the knobs."""
from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from animvfi_pipeline.training.distributed import launch
from animvfi_pipeline.training.tasks import fit_flow

log = logging.getLogger(__name__)


def pretrain_flow(
    triplet_store: Any, flow_model_params: dict[str, Any], flow_training_params: dict[str, Any]
) -> tuple[dict, pd.DataFrame]:
    """Pretrain the flow network on the store's train split, choosing the epoch by validation EPE.

    Args:
        triplet_store: the ``TripletStore`` written by data_ingestion.
        flow_model_params: ``FlowNetConfig`` fields.
        flow_training_params: ``nproc`` (int or "auto"), ``data`` (crop, augment), ``loss``
            (flow_loss weights), ``loop`` (``TrainConfig`` fields), ``tracking``, ``init_from`` (null,
            or a ``flownet.pt`` / MLflow VFI model URI whose flow network is fine-tuned).

    Returns:
        The best epoch's checkpoint dict and the per-epoch history.
    """
    result = launch(fit_flow, flow_training_params.get("nproc", 1), triplet_store, flow_model_params,
                    flow_training_params)
    log.info("flow pretraining: best validation %s %.4f at epoch %d",
             "EPE" if "val_epe" in result.history else "photometric error", result.best_metric, result.best_epoch)
    return result.checkpoint, result.history
