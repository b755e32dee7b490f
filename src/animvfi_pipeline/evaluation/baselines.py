"""Methods the model is compared with, all behind one signature.

A predictor is ``fn(img0, img1, t) -> pred``: ``img0``/``img1`` are uint8 ``(H, W, 3)`` RGB frames
at t = 0 and t = 1 (as ``TripletStore.frames`` gives them), ``t`` a float in [0, 1], and ``pred``
a float32 ``(H, W, 3)`` array in [0, 1]. Predictions stay float so that no method is rounded to
8 bits before it is scored (see metrics.py). None of these methods is trained.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from animvfi_pipeline.data.flow import dis_flow
from animvfi_pipeline.models.splat import fb_consistency, motion_at_t
from animvfi_pipeline.models.warp import warp

Predictor = Callable[[np.ndarray, np.ndarray, float], np.ndarray]


def repeat(img0: np.ndarray, img1: np.ndarray, t: float) -> np.ndarray:
    """Frame1 unchanged: what a player shows when it duplicates frames."""
    return img0.astype(np.float32) / 255.0


def blend(img0: np.ndarray, img1: np.ndarray, t: float) -> np.ndarray:
    """Mean of the two frames (a cross-fade at its midpoint, whatever t is)."""
    return (img0.astype(np.float32) + img1.astype(np.float32)) / (2.0 * 255.0)


@dataclass
class ClassicalFlowConfig:
    """DIS preset (ultrafast | fast | medium) and the forward-backward consistency test.

    A pixel is trusted while ``|f + f_back|^2 <= alpha (|f|^2 + |f_back|^2) + beta`` (Sundaram
    et al. 2010); the weight decays smoothly with that ratio instead of switching off.
    """

    preset: str = "medium"
    consistency_alpha: float = 0.01
    consistency_beta: float = 0.5


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float() / 255.0


def _to_image(x: torch.Tensor) -> np.ndarray:
    return x[0].clamp(0.0, 1.0).permute(1, 2, 0).cpu().numpy().astype(np.float32)


def interpolate_with_flow(
    img0: np.ndarray,
    img1: np.ndarray,
    flow_01: np.ndarray,
    flow_10: np.ndarray,
    t: float,
    config: ClassicalFlowConfig | None = None,
) -> np.ndarray:
    """Frame at time t from two frames and their bidirectional flow ((2, H, W) each, in pixels).

    Intermediate flows come from splatting the flows to time t (``models.splat.motion_at_t``), then both
    frames are backward-warped and blended with weights ``(1-t)`` and ``t``, each scaled down
    where the other frame shows content it does not have: a pixel of frame 0 that fails the
    forward-backward test is hidden in frame 1, so wherever it appears at time t the sample taken
    from frame 1 shows the wrong surface (and vice versa).
    """
    cfg = config or ClassicalFlowConfig()
    t = float(t)
    f01 = torch.from_numpy(np.ascontiguousarray(flow_01, dtype=np.float32))[None]
    f10 = torch.from_numpy(np.ascontiguousarray(flow_10, dtype=np.float32))[None]
    with torch.no_grad():
        vis0 = fb_consistency(f01, f10, cfg.consistency_alpha, cfg.consistency_beta)
        vis1 = fb_consistency(f10, f01, cfg.consistency_alpha, cfg.consistency_beta)
        motion = motion_at_t(f01, f10, torch.tensor([t]), vis0, vis1)
        ft0, ft1 = -t * motion, (1.0 - t) * motion
        # The small floor keeps weights positive, so pixels failing both tests fall back to t.
        w0 = (1.0 - t) * (warp(vis1, ft1) + 1e-3)
        w1 = t * (warp(vis0, ft0) + 1e-3)
        pred = (w0 * warp(_to_tensor(img0), ft0) + w1 * warp(_to_tensor(img1), ft1)) / (w0 + w1)
    return _to_image(pred)


def classical_flow(
    img0: np.ndarray, img1: np.ndarray, t: float, config: ClassicalFlowConfig | None = None
) -> np.ndarray:
    """Flow-based interpolation with no learning: OpenCV DIS flow both ways
    (``data.flow.dis_flow`` at ``config.preset``), then :func:`interpolate_with_flow`."""
    cfg = config or ClassicalFlowConfig()
    flow_01 = dis_flow(img0, img1, cfg.preset)
    flow_10 = dis_flow(img1, img0, cfg.preset)
    return interpolate_with_flow(img0, img1, flow_01, flow_10, t, cfg)


def classical_flow_predictor(config: ClassicalFlowConfig | None = None) -> Predictor:
    """:func:`classical_flow` with its config bound, as a plain predictor."""
    cfg = config or ClassicalFlowConfig()

    def predict(img0: np.ndarray, img1: np.ndarray, t: float) -> np.ndarray:
        return classical_flow(img0, img1, t, cfg)

    return predict


def model_predictor(model: torch.nn.Module, device: str | torch.device = "cpu", flips: int | None = None) -> Predictor:
    """Wrap a model with ``inference(img0, img1, t) -> (B, 3, H, W)`` (float in [0, 1]) as a
    predictor, so the model is scored exactly like the baselines. ``flips``: mirrored passes
    (VFIModel.inference); None leaves the model's own setting."""
    model = model.to(device).eval()
    extra = {} if flips is None else {"flips": flips}

    def predict(img0: np.ndarray, img1: np.ndarray, t: float) -> np.ndarray:
        with torch.no_grad():
            out = model.inference(_to_tensor(img0).to(device), _to_tensor(img1).to(device), float(t), **extra)
        return _to_image(out)

    return predict
