"""The promotion gate: a new model becomes the champion only if it beats, on the same validation
triplets, both its own prior (the network with its learned parts off) and the current champion.

Pure decision logic; scoring lives in ``evaluation.report`` and the registry in ``registry.py``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping

import torch

from animvfi_pipeline.evaluation import baselines, report
from animvfi_pipeline.models.vfi import VFIModel, prior_network


HIGHER_IS_BETTER = {"psnr", "ssim", "ssim_animeinterp"}


@dataclass
class GateParams:
    """``params:promotion`` (conf/base/parameters_evaluation.yml); unknown keys are an error."""

    split: str = "val"
    limit: int | None = 8  # the first N triplets of the split: enough to rank, cheap on a CPU
    metric: str = "psnr"  # psnr | ssim | ssim_animeinterp: higher is better
    min_gain: float = 0.0  # the new model must beat each rival by more than this
    model_name: str = "animvfi-vfi"
    alias: str = "champion"
    device: str = "auto"  # auto | cpu | cuda
    # Mirrored passes for every model the gate scores (None: each model's own flip_ensemble). One
    # pass ranks the weights themselves, like with like, in a quarter of the time.
    flips: int | None = 1

    def __post_init__(self) -> None:
        if self.metric not in HIGHER_IS_BETTER:
            raise ValueError(f"promotion.metric {self.metric!r}: expected one of {sorted(HIGHER_IS_BETTER)}")


@dataclass
class GateResult:
    metric: str
    split: str
    n_triplets: int
    new: float
    prior: float
    champion: float | None  # None: no champion yet (first run on an empty registry)
    champion_version: str | None
    promote: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def decide(new: float, prior: float, champion: float | None, min_gain: float = 0.0) -> tuple[bool, str]:
    """(promote, reason). Ties do not promote: a new version must earn the alias."""
    if not new > prior + min_gain:
        return False, f"does not beat its prior ({new:.3f} vs {prior:.3f})"
    if champion is None:
        return True, f"beats its prior ({new:.3f} vs {prior:.3f}); no champion yet"
    if not new > champion + min_gain:
        return False, f"beats its prior ({new:.3f} vs {prior:.3f}) but not the champion ({champion:.3f})"
    return True, f"beats its prior ({new:.3f} vs {prior:.3f}) and the champion ({champion:.3f})"


def score_models(store: Any, models: Mapping[str, torch.nn.Module], params: GateParams,
                 device: str | torch.device = "cpu") -> tuple[dict[str, float], int]:
    """Mean ``params.metric`` of each model on the same triplets, and how many triplets that was."""
    predictors = {name: baselines.model_predictor(model, device, flips=params.flips) for name, model in models.items()}
    table = report.evaluate_methods(store, predictors, split=params.split, limit=params.limit)
    summary = report.summarize(table)
    # A diverged model (NaN frames) has no mean: NaN, which beats nothing (every comparison is False).
    scores = {name: float(summary[name].get(params.metric, math.nan)) for name in models}
    return scores, int(summary["new"]["n_triplets"])


def run_gate(store: Any, model: VFIModel, params: GateParams,
             load_champion: Callable[[], tuple[VFIModel, str] | None],
             device: str | torch.device = "cpu") -> GateResult:
    """Score ``model``, its prior and the champion (``load_champion()``: (model, version) or None)
    on the same validation triplets and decide whether ``model`` takes the alias."""
    models: dict[str, torch.nn.Module] = {"new": model, "prior": prior_network(model.cfg)}
    champion = load_champion()
    if champion is not None:
        models["champion"] = champion[0]
    scores, n = score_models(store, models, params, device)
    promote, reason = decide(scores["new"], scores["prior"], scores.get("champion"), params.min_gain)
    return GateResult(metric=params.metric, split=params.split, n_triplets=n, new=scores["new"],
                      prior=scores["prior"], champion=scores.get("champion"),
                      champion_version=champion[1] if champion else None, promote=promote, reason=reason)
