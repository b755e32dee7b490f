"""Motion at time t by forward splatting: where is each surface at t, and how does it move?

Backward warping needs, for every pixel of the frame at t, the flow *from t*. Super SloMo's
linear estimate (``models.vfi.intermediate_flows``) reads the 0 -> 1 flow at the same pixel of
frame 0, which is the wrong surface wherever something moved across it: at every motion boundary
it blends the object's and the background's motion and the warps show double edges. Splatting
sends every pixel of frame 0 to where it is at t (``p + t F01(p)``) and every pixel of frame 1 to
``p + (1-t) F10(p)``, so each pixel at t gets the motion of the surface that actually lands there.

Used by the classical baseline (evaluation/baselines.py) and by VFIModel's fixed core
(``VFIConfig.intermediate``). Gradients flow into the splatted motion values, not into where
they land (positions are rounded to the nearest pixel).
"""
from __future__ import annotations

import torch

from animvfi_pipeline.models.warp import warp


def fb_consistency(flow_ab: torch.Tensor, flow_ba: torch.Tensor, alpha: float = 0.01, beta: float = 0.5
                   ) -> torch.Tensor:
    """(B, 1, H, W) weight in (0, 1] per pixel of frame a: near 1 where the round trip a -> b -> a
    comes back, near 0 where the pixel of a is hidden in b.

    A pixel is trusted while ``|f + f_back|^2 <= alpha (|f|^2 + |f_back|^2) + beta`` (Sundaram
    et al. 2010); the weight decays smoothly with that ratio instead of switching off.
    """
    back = warp(flow_ba, flow_ab)
    err = (flow_ab + back).pow(2).sum(1, keepdim=True)
    bound = alpha * (flow_ab.pow(2).sum(1, keepdim=True) + back.pow(2).sum(1, keepdim=True))
    return torch.exp(-err / (bound + beta))


def motion_at_t(flow_01: torch.Tensor, flow_10: torch.Tensor, t: torch.Tensor,
                vis_0: torch.Tensor | None = None, vis_1: torch.Tensor | None = None) -> torch.Tensor:
    """(B, 2, H, W): the frame 0 -> frame 1 displacement of the surface seen at each pixel at t.

    Every pixel of frame 0 lands on its nearest pixel at ``p + t F01(p)``, every pixel of frame 1
    on ``p + (1-t) F10(p)`` with its motion negated, weighted by its forward-backward consistency
    (``vis_*``, computed when not given): where a moving object and the background it covers land
    on the same pixel, the visible one wins. Pixels nothing lands on get the linear estimate
    ``(1-t) F01 - t F10``. t is (B,).
    """
    b, _, h, w = flow_01.shape
    if vis_0 is None:
        vis_0 = fb_consistency(flow_01, flow_10)
    if vis_1 is None:
        vis_1 = fb_consistency(flow_10, flow_01)
    t = t.to(flow_01.dtype).view(-1, 1, 1)
    ys = torch.arange(h, device=flow_01.device, dtype=flow_01.dtype).view(1, h, 1)
    xs = torch.arange(w, device=flow_01.device, dtype=flow_01.dtype).view(1, 1, w)
    base = (torch.arange(b, device=flow_01.device) * (h * w)).view(b, 1, 1)
    motion = flow_01.new_zeros(2, b * h * w)
    weight = flow_01.new_zeros(b * h * w)
    for flow, vis, dt, sign in ((flow_01, vis_0, t, 1.0), (flow_10, vis_1, 1.0 - t, -1.0)):
        with torch.no_grad():
            tx = torch.round(xs + dt * flow[:, 0]).long()
            ty = torch.round(ys + dt * flow[:, 1]).long()
            inside = (tx >= 0) & (tx < w) & (ty >= 0) & (ty < h)
            target = (base + ty * w + tx)[inside]
        wt = vis[:, 0][inside] + 1e-4  # even a hidden pixel beats leaving a hole
        weight = weight.index_add(0, target, wt)
        moved = torch.stack([sign * flow[:, 0][inside], sign * flow[:, 1][inside]]) * wt
        motion = motion.index_add(1, target, moved)
    motion = motion.view(2, b, h, w).transpose(0, 1)
    weight = weight.view(b, 1, h, w)
    tt = t.view(-1, 1, 1, 1)
    linear = (1.0 - tt) * flow_01 - tt * flow_10
    return torch.where(weight > 0, motion / weight.clamp_min(1e-12), linear)


def splatted_flows(flow_01: torch.Tensor, flow_10: torch.Tensor, t: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Flows from time t to frames 0 and 1 along the splatted motion: ``warp(img0, flow_t0)`` and
    ``warp(img1, flow_t1)`` both approximate the frame at t. t is (B,)."""
    motion = motion_at_t(flow_01, flow_10, t)
    tt = t.to(motion.dtype).view(-1, 1, 1, 1)
    return -tt * motion, (1.0 - tt) * motion
