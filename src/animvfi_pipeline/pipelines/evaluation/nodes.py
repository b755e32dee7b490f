"""Thin node over the evaluation library; metric definitions are in docs/evaluation.md."""
from __future__ import annotations

import dataclasses

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
from matplotlib.figure import Figure

from animvfi_pipeline.evaluation import baselines, figures, report
from animvfi_pipeline.evaluation.metrics import make_lpips
from animvfi_pipeline.models.checkpoint import build_vfi_model
from animvfi_pipeline.models.vfi import prior_network
from animvfi_pipeline.tracking import gate, registry
from animvfi_pipeline.tracking.model_source import load_starting_model

log = logging.getLogger(__name__)


@dataclass
class EvaluationParams:
    """``params:evaluation`` (conf/base/parameters_evaluation.yml); unknown keys are an error."""

    split: str = "test"
    limit: int | None = None  # score only the first N triplets of the split
    device: str = "auto"  # auto | cpu | cuda
    lpips: bool = True  # used only when the lpips package and AlexNet weights are already local
    classical_flow: dict[str, Any] = field(default_factory=dict)  # ClassicalFlowConfig fields
    unseen_styles: list[str] = field(default_factory=list)  # style families training never saw
    flips: int | None = None  # mirrored passes for the model, its prior and its start; None: the checkpoint's
    # DIS variants the model, its prior and its start choose their flow among (VFIConfig.flow_candidates);
    # None: the checkpoint's; []: its single preset.
    flow_candidates: list[str] | None = None
    warp_mode: str | None = None  # bilinear | bicubic for the model, its prior and its start; None: the checkpoint's


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def evaluate(
    triplet_store: Any,
    vfi_model: dict,
    flow_training_history: pd.DataFrame | None,
    vfi_training_history: pd.DataFrame | None,
    evaluation_params: dict[str, Any],
) -> tuple[dict, pd.DataFrame, pd.DataFrame, str, Figure, Figure, Figure]:
    """Score the trained model and the baselines on every triplet of the evaluated split.

    Args:
        triplet_store: the ``TripletStore`` written by data_ingestion.
        vfi_model: the VFI checkpoint dict from vfi_training.
        flow_training_history, vfi_training_history: per-epoch tables of the two training stages.
        evaluation_params: ``EvaluationParams`` fields.

    Returns:
        metrics (``{method: {metric: value}}`` with methods model, prior, repeat, blend, classical_flow,
        and for a fine-tuned model ``start``, the model it started from),
        the per-triplet table, the per-method table, the Markdown summary, and the gallery,
        PSNR-distribution and training-curve figures.
    """
    params = EvaluationParams(**evaluation_params)
    device = _device(params.device)
    model = with_settings(build_vfi_model(vfi_model, source="vfi_model"), params.flow_candidates, params.warp_mode)
    predictors = {
        "model": baselines.model_predictor(model, device, params.flips),
        # What training added is model - prior: the same network with its learned parts off,
        # run with the same mirrored passes.
        "prior": baselines.model_predictor(prior_network(model.cfg), device, params.flips),
        "repeat": baselines.repeat,
        "blend": baselines.blend,
        "classical_flow": baselines.classical_flow_predictor(baselines.ClassicalFlowConfig(**params.classical_flow)),
    }
    start = with_settings(load_starting_model(vfi_model), params.flow_candidates, params.warp_mode)
    if start is not None:  # a fine-tuned model (init_from): what fine-tuning added is model - start
        predictors = {"model": predictors.pop("model"), "start": baselines.model_predictor(start, device, params.flips),
                      **predictors}
    lpips_fn = make_lpips(str(device)) if params.lpips else None
    per_triplet = report.evaluate_methods(triplet_store, predictors, split=params.split, limit=params.limit,
                                          lpips_fn=lpips_fn, unseen_styles=params.unseen_styles)
    summary = report.summarize(per_triplet)
    for method, values in summary.items():  # a diverged model's NaN means are left out of the summary
        log.info("%-15s PSNR %.2f dB  SSIM %.4f  SSIM (AnimeInterp) %.4f", method, values.get("psnr", math.nan),
                 values.get("ssim", math.nan), values.get("ssim_animeinterp", math.nan))
    return (
        summary,
        per_triplet,
        report.method_table(summary),
        report.markdown_summary(summary, split=params.split,
                                notes=_run_notes(params.flips or model.cfg.flip_ensemble, model.cfg.flow_candidates,
                                                           model.cfg.warp_mode)),
        figures.gallery_figure(triplet_store, per_triplet, predictors["model"], method="model"),
        figures.psnr_distribution_figure(per_triplet),
        figures.training_curves_figure({"flow": flow_training_history, "vfi": vfi_training_history}),
    )


def with_settings(model: torch.nn.Module | None, candidates: list[str] | None,
                  warp_mode: str | None = None) -> torch.nn.Module | None:
    """``model`` choosing its flow prior among ``candidates`` and sampling its warps with
    ``warp_mode`` (None: as it is, for each)."""
    if model is not None and candidates is not None:
        model.cfg = dataclasses.replace(model.cfg, flow_candidates=list(candidates))
    if model is not None and warp_mode is not None:
        model.cfg = dataclasses.replace(model.cfg, warp_mode=warp_mode)
    return model


def _run_notes(passes: int, candidates: list[str], warp_mode: str = "bilinear") -> list[str]:
    if passes == 1:
        notes = ["The model and its prior run one pass each (no mirrored passes)."]
    else:
        notes = [f"The model and its prior each average {passes} mirrored passes (`flip_ensemble`, docs/training.md)."]
    if candidates:
        notes.append(f"Their flow prior is, per pair, the best of the DIS variants {', '.join(candidates)} "
                     "(`flow_candidates`, docs/training.md).")
    if warp_mode != "bilinear":
        notes.append(f"Their warps sample the frames with the {warp_mode} kernel (`warp_mode`, docs/training.md).")
    return notes


def promotion_gate(triplet_store: Any, vfi_model: dict, promotion_params: dict[str, Any]) -> dict[str, Any]:
    """Score the trained model, its prior and the registry's champion on the same validation
    triplets and decide whether the model takes the champion alias (tracking/gate.py).

    Args:
        triplet_store: the ``TripletStore`` written by data_ingestion.
        vfi_model: the VFI checkpoint dict from vfi_training.
        promotion_params: ``GateParams`` fields (conf/base/parameters_registry.yml).

    Returns:
        ``GateResult`` as a dict; the project hook registers the model version and moves the alias.
    """
    params = gate.GateParams(**promotion_params)
    model = build_vfi_model(vfi_model, source="vfi_model")
    result = gate.run_gate(triplet_store, model, params, registry.champion_loader(params.model_name, params.alias),
                           device=_device(params.device))
    log.info("promotion gate: %s", result.reason)
    return result.to_dict()
