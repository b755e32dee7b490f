"""Backward warping: the one place where pixels move along a flow field."""
from __future__ import annotations

import torch
import torch.nn.functional as F

_GRID_CACHE: dict[tuple, torch.Tensor] = {}


def _base_grid(h: int, w: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    key = (h, w, device, dtype)
    grid = _GRID_CACHE.get(key)
    if grid is None:
        ys, xs = torch.meshgrid(
            torch.arange(h, device=device, dtype=dtype),
            torch.arange(w, device=device, dtype=dtype),
            indexing="ij",
        )
        grid = torch.stack((xs, ys), dim=0)[None]  # (1, 2, H, W), pixel coordinates
        if len(_GRID_CACHE) > 32:  # bounded: many sizes only appear in tests and tiling
            _GRID_CACHE.clear()
        _GRID_CACHE[key] = grid
    return grid


WARP_MODES = ("bilinear", "bicubic")


def warp(img: torch.Tensor, flow: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Sample ``img`` at ``p + flow(p)`` for every pixel ``p`` (backward warping).

    img: (B, C, H, W); flow: (B, 2, H, W) in pixels, channel 0 = x. With ``flow_13`` (frame1 ->
    frame3), ``warp(frame3, flow_13)`` reconstructs frame1. Out-of-frame samples use border
    padding, which keeps flat cartoon colours at the edges instead of fading to black.

    ``mode``: "bilinear", or "bicubic" (Keys' kernel, a = -0.75): at a fractional offset bilinear
    sampling averages two neighbours and so low-pass filters fine texture (paper grain, hatching)
    by up to half its contrast; bicubic keeps most of it, at the price of a small overshoot on
    hard edges (callers clamp the final frame). Flows, masks and features are always warped
    bilinearly by the callers: only the pixels a frame is made of gain from the sharper kernel.
    """
    if mode not in WARP_MODES:
        raise ValueError(f"warp mode must be one of {WARP_MODES}, got {mode!r}")
    b, _, h, w = flow.shape
    coords = _base_grid(h, w, flow.device, flow.dtype) + flow
    # align_corners=True maps -1 and 1 to the centres of the first and last pixels.
    gx = 2.0 * coords[:, 0] / max(w - 1, 1) - 1.0
    gy = 2.0 * coords[:, 1] / max(h - 1, 1) - 1.0
    grid = torch.stack((gx, gy), dim=-1)
    return F.grid_sample(img, grid.to(img.dtype), mode=mode, padding_mode="border", align_corners=True)


def mismatch_gate(a: torch.Tensor, b: torch.Tensor, scale: float, reach: int = 2) -> torch.Tensor:
    """(B, 1, H, W) in [0, 1): about 0 where ``a`` and ``b`` agree, towards 1 where they differ.

    Learned corrections are multiplied by this gate with ``a`` and ``b`` two images that the
    classical path says should match (the two warped frames, or a frame and its warped
    neighbour). Where they already agree, as on every pixel that does not move, the classical
    result stands untouched; the correction can only act where the classical path visibly
    failed. ``scale`` is the mean absolute difference over the channels (in [0, 1] units) at which
    the gate is 63 % open; below half of it the gate is shut, exactly 0, so sensor noise and
    compression noise on a still background never let a correction in. ``reach`` dilates the gate
    by that many pixels, so a correction can also fix the pixels beside a mismatch (the edge of an
    occlusion).
    """
    d = (a - b).abs().mean(dim=1, keepdim=True)
    if reach > 0:
        d = F.max_pool2d(d, 2 * reach + 1, stride=1, padding=reach)
    return 1.0 - torch.exp(-(F.relu(d - 0.5 * scale) / (0.5 * scale)) ** 2)
