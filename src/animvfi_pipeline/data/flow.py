"""Optical-flow helpers: resize with rescaling, OpenCV DIS pseudo-flow, colour-wheel rendering.

Flow arrays follow docs/architecture.md: float32 ``(2, H, W)``, channel 0 = x, channel 1 = y, in
pixels; ``flow_ab`` moves a pixel of image a to its match in image b, so
``warp(img_b, flow_ab) ~= img_a``.
"""
from __future__ import annotations

import cv2
import numpy as np

DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
    "fine": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,  # + the settings below
    "fine-pca": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,  # "fine" on the pair's own grey projection
    "fine-alpha10": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,  # "fine" with half the smoothness weight
}
# "fine": OpenCV's medium preset carried down to full resolution (finest scale 0 instead of 1)
# with denser patches (stride 2 instead of 3) and more descent iterations (50 instead of 25).
# Outlines are one to three pixels wide: a flow field that stops at half resolution blurs them
# across motion boundaries. On the embedded validation split the splatting interpolator gains
# 1.0 dB (1.6 dB on the unseen style) over "medium" for ~5x its time (docs/training.md).
_FINE_SETTINGS = {"setFinestScale": 0, "setPatchStride": 2, "setGradientDescentIterations": 50}
# The variants that ``best_dis_flow_pair`` chooses among. DIS sees one grey channel: two paints of
# equal luminance look alike to it, so "fine-pca" projects the pair's colours on their direction
# of largest variance instead of on luminance; "fine-alpha10" halves the variational refinement's
# smoothness weight (OpenCV's default 20), which follows small motion of thin lines more closely.
_VARIANT_SETTINGS = {
    "fine": _FINE_SETTINGS,
    "fine-pca": _FINE_SETTINGS,
    "fine-alpha10": {**_FINE_SETTINGS, "setVariationalRefinementAlpha": 10.0},
}
# Per-pixel colour error (sum over RGB, 0-255 scale) above which a pixel counts as unmatched
# (an occlusion or a disocclusion), so that such pixels count the same for every candidate.
PHOTOMETRIC_CAP = 60.0


def _check_flow(flow: np.ndarray) -> None:
    if flow.ndim != 3 or flow.shape[0] != 2:
        raise ValueError(f"flow must have shape (2, H, W), got {flow.shape}")


def resize_flow(flow: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize ``flow`` (2, H, W) to ``size = (W_new, H_new)`` and rescale its vectors.

    A displacement of d pixels along x becomes ``d * W_new / W`` pixels, along y
    ``d * H_new / H``: each axis by its own factor, which matters for anisotropic resizes.
    Returns float32 (2, H_new, W_new); ``flow`` itself when it already is float32 at that size.
    """
    _check_flow(flow)
    _, h, w = flow.shape
    new_w, new_h = int(size[0]), int(size[1])
    if (new_w, new_h) == (w, h):
        return flow.astype(np.float32, copy=False)
    # Area averaging when shrinking avoids aliasing thin, fast-moving structures away.
    interp = cv2.INTER_AREA if new_w <= w and new_h <= h else cv2.INTER_LINEAR
    out = np.empty((2, new_h, new_w), np.float32)
    for c, scale in ((0, new_w / w), (1, new_h / h)):
        out[c] = cv2.resize(flow[c].astype(np.float32), (new_w, new_h), interpolation=interp) * scale
    return out


def _gray(img: np.ndarray) -> np.ndarray:
    if img.ndim == 2:
        return np.ascontiguousarray(img, dtype=np.uint8)
    return cv2.cvtColor(np.ascontiguousarray(img, dtype=np.uint8), cv2.COLOR_RGB2GRAY)


def grey_pair(img_a: np.ndarray, img_b: np.ndarray, projection: str = "luma") -> tuple[np.ndarray, np.ndarray]:
    """Both images as uint8 grey. "luma": OpenCV's luminance. "pca": the pair's colours projected
    on their first principal direction, stretched to 0-255 over both images (the same mapping
    for both, so brightness constancy still holds)."""
    if projection == "luma" or img_a.ndim == 2:
        return _gray(img_a), _gray(img_b)
    colours = np.concatenate([img_a.reshape(-1, 3), img_b.reshape(-1, 3)]).astype(np.float32)
    colours -= colours.mean(0)
    axis = np.linalg.svd(np.cov(colours.T))[0][:, 0]
    axis = axis * (1.0 if axis.sum() >= 0 else -1.0)  # bright stays bright, as in luminance
    ya, yb = (img.reshape(-1, 3).astype(np.float32) @ axis for img in (img_a, img_b))
    lo, hi = min(ya.min(), yb.min()), max(ya.max(), yb.max())
    scale = 255.0 / max(hi - lo, 1e-6)
    return tuple(np.round((y - lo) * scale).astype(np.uint8).reshape(img_a.shape[:2]) for y in (ya, yb))


def dis_flow(img_a: np.ndarray, img_b: np.ndarray, preset: str = "medium") -> np.ndarray:
    """Dense flow from ``img_a`` to ``img_b`` with OpenCV's DIS (uint8 RGB or gray, same size).

    Returns float32 (2, H, W) with ``warp(img_b, flow) ~= img_a``, the project's convention
    (OpenCV's ``calc(a, b)`` already gives ``a(p) ~= b(p + flow(p))``).
    """
    if preset not in DIS_PRESETS:
        raise ValueError(f"unknown DIS preset {preset!r}; choose one of {sorted(DIS_PRESETS)}")
    if img_a.shape != img_b.shape:
        raise ValueError(f"images differ in shape: {img_a.shape} vs {img_b.shape}")
    dis = cv2.DISOpticalFlow_create(DIS_PRESETS[preset])
    for setter, value in _VARIANT_SETTINGS.get(preset, {}).items():
        getattr(dis, setter)(value)
    grey_a, grey_b = grey_pair(img_a, img_b, "pca" if preset.endswith("-pca") else "luma")
    flow = dis.calc(grey_a, grey_b, None)  # (H, W, 2)
    return np.ascontiguousarray(flow.transpose(2, 0, 1), dtype=np.float32)


def dis_flow_pair(img0: np.ndarray, img1: np.ndarray, preset: str = "medium") -> np.ndarray:
    """float32 (4, H, W): DIS flow 0 -> 1 (channels 0-1) and 1 -> 0 (channels 2-3), the prior a
    FlowNet with ``init="dis"`` refines."""
    return np.concatenate([dis_flow(img0, img1, preset), dis_flow(img1, img0, preset)])


def photometric_error(img_a: np.ndarray, img_b: np.ndarray, flow_ab: np.ndarray) -> float:
    """Mean colour error of ``img_b`` warped along ``flow_ab`` onto ``img_a`` (uint8 RGB): per
    pixel the L1 distance over the three channels, capped at ``PHOTOMETRIC_CAP``."""
    h, w = img_a.shape[:2]
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
    warped = cv2.remap(img_b, gx + flow_ab[0], gy + flow_ab[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    diff = np.abs(warped.astype(np.float32) - img_a.astype(np.float32))
    diff = diff.reshape(h, w, -1).sum(-1)
    return float(np.minimum(diff, PHOTOMETRIC_CAP).mean())


def best_dis_flow_pair(img0: np.ndarray, img1: np.ndarray, presets: str | tuple[str, ...] | list[str]) -> np.ndarray:
    """``dis_flow_pair`` for each of ``presets`` and return the one whose flows explain the pair's
    colours best (lowest ``photometric_error`` summed over both directions).

    DIS matches grey levels only; the colour error is a check it never optimised, so it tells a
    flow that matched the wrong paint from one that matched the right one. The choice is made per
    pair, not per pixel: each candidate is a whole, smooth DIS field (docs/training.md, "Flow
    candidates at inference").
    """
    presets = (presets,) if isinstance(presets, str) else tuple(presets)
    if len(presets) == 1:
        return dis_flow_pair(img0, img1, presets[0])
    best, best_error = None, np.inf
    for preset in presets:
        pair = dis_flow_pair(img0, img1, preset)
        error = photometric_error(img0, img1, pair[:2]) + photometric_error(img1, img0, pair[2:])
        if error < best_error:
            best, best_error = pair, error
    return best


def flow_to_color(flow: np.ndarray, max_flow: float | None = None) -> np.ndarray:
    """Render flow (2, H, W) as uint8 RGB (H, W, 3): hue = direction, saturation = magnitude.

    Zero motion is white, as in the usual optical-flow colour wheel. ``max_flow`` fixes the
    magnitude that maps to full saturation so several figures share one scale; by default the
    largest magnitude in ``flow`` is used.
    """
    _check_flow(flow)
    fx = flow[0].astype(np.float32)
    fy = flow[1].astype(np.float32)
    fx = np.nan_to_num(fx, nan=0.0, posinf=0.0, neginf=0.0)
    fy = np.nan_to_num(fy, nan=0.0, posinf=0.0, neginf=0.0)
    mag, ang = cv2.cartToPolar(fx, fy, angleInDegrees=True)
    if max_flow is None:
        max_flow = float(mag.max())
    sat = np.clip(mag / max(max_flow, 1e-6), 0.0, 1.0)
    hsv = np.empty(fx.shape + (3,), np.uint8)
    hsv[..., 0] = (ang / 2.0).astype(np.uint8) % 180  # OpenCV 8-bit hue is 0..179
    hsv[..., 1] = np.round(sat * 255.0).astype(np.uint8)
    hsv[..., 2] = 255
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
