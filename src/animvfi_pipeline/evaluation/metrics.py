"""Image-quality metrics for frame interpolation, each named for exactly what it computes.

All functions take ``pred`` and ``gt`` as RGB ``(H, W, 3)`` NumPy arrays, either float in [0, 1]
or uint8 (divided by 255). The prediction is clamped to [0, 1] and never rounded to 8 bits, as in
AnimeInterp's published evaluation; rounding would cost a model about 0.1 dB it did not lose.
See docs/evaluation.md for why each definition was chosen and how the numbers compare with the
published ATD-12K tables.
"""
from __future__ import annotations

import importlib.util
import logging
import math
from pathlib import Path
from typing import Callable

import numpy as np
from skimage.metrics import structural_similarity

from animvfi_pipeline.data.atd12k import scale_roi

logger = logging.getLogger(__name__)

Box = tuple[int, int, int, int]  # x, y, width, height in pixels


def _as_unit_float(img: np.ndarray, name: str) -> np.ndarray:
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"{name} must be an RGB image of shape (H, W, 3), got {img.shape}")
    if img.dtype == np.uint8:
        return img.astype(np.float64) / 255.0
    return np.clip(img.astype(np.float64), 0.0, 1.0)


def _pair(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = _as_unit_float(pred, "pred")
    g = _as_unit_float(gt, "gt")
    if p.shape != g.shape:
        raise ValueError(f"pred and gt differ in shape: {p.shape} vs {g.shape}")
    return p, g


def psnr(pred: np.ndarray, gt: np.ndarray) -> float:
    """PSNR in dB with data range 1: ``10 log10(1 / MSE)``, MSE over all pixels and channels.

    Identical images give ``inf`` (the report caps it when averaging).
    """
    p, g = _pair(pred, gt)
    mse = float(np.mean((p - g) ** 2))
    return math.inf if mse == 0.0 else 10.0 * math.log10(1.0 / mse)


def ssim(pred: np.ndarray, gt: np.ndarray) -> float:
    """Standard SSIM (Wang et al. 2004): 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03,
    population covariance, data range 1, mean of the three per-channel SSIMs.

    Needs images at least 11 pixels on each side.
    """
    p, g = _pair(pred, gt)
    return float(
        structural_similarity(
            p, g, channel_axis=2, data_range=1.0, gaussian_weights=True, sigma=1.5,
            use_sample_covariance=False, K1=0.01, K2=0.03,
        )
    )


def ssim_animeinterp(pred: np.ndarray, gt: np.ndarray) -> float:
    """SSIM as AnimeInterp's published evaluation computes it, for comparison with its tables.

    Their script calls skimage's SSIM on float images with no data range and a misspelt
    ``gaussian=True`` that skimage ignored, so it got the defaults of the time: a 7x7 uniform
    window, sample covariance, and data range 2 (dtype range of floats, assumed [-1, 1]). The
    doubled range makes the stabilising constants C1 and C2 four times larger, which pulls SSIM
    towards 1 on flat cartoon colours.
    Exactly: ``structural_similarity(pred, gt, channel_axis=2, data_range=2.0, win_size=7,
    gaussian_weights=False, use_sample_covariance=True)``.
    """
    p, g = _pair(pred, gt)
    return float(
        structural_similarity(
            p, g, channel_axis=2, data_range=2.0, win_size=7, gaussian_weights=False,
            use_sample_covariance=True,
        )
    )


def interpolation_error(pred: np.ndarray, gt: np.ndarray) -> float:
    """Interpolation error (IE) on the 0-255 scale: root mean squared difference over all pixels
    and all three channels, ``sqrt(mean((255 pred - 255 gt)^2))``.

    This is the Middlebury IE (Baker et al. 2011) as most VFI papers compute it on colour images.
    Baker et al. take the RGB vector norm per pixel, which is sqrt(3) times this value;
    AnimeInterp's script averages the per-pixel RGB norm without squaring.
    """
    p, g = _pair(pred, gt)
    return float(np.sqrt(np.mean((255.0 * p - 255.0 * g) ** 2)))


def roi_box_scaled(roi: Box, orig_size: tuple[int, int], eval_size: tuple[int, int]) -> Box:
    """Scale an annotation box ``(x, y, w, h)`` from the original image size to the evaluated one.

    Sizes are ``(width, height)``. Each coordinate is floor-divided by the float scale
    ``orig / eval``, as the AnimeInterp protocol does (ATD-12K boxes are given in the source
    video's pixels, the test frames are 960x540). Data ingestion stores boxes scaled by this
    same rule (``data.atd12k.scale_roi``), so there is one implementation.
    """
    return scale_roi(roi, orig_size, eval_size)


def _crop(img: np.ndarray, box: Box) -> np.ndarray | None:
    x, y, w, h = (int(v) for v in box)
    if w <= 0 or h <= 0 or x < 0 or y < 0:
        return None  # unknown (-1) or empty box
    crop = np.asarray(img)[y : y + h, x : x + w]
    return crop if crop.size else None


def psnr_roi(pred: np.ndarray, gt: np.ndarray, box: Box) -> float:
    """:func:`psnr` on the ``(x, y, w, h)`` box (in the images' pixels); NaN if the box is unknown
    or empty. A box running past the image edge is cut at the edge."""
    p, g = _crop(pred, box), _crop(gt, box)
    return math.nan if p is None else psnr(p, g)


def _ssim_on_box(fn: Callable, pred: np.ndarray, gt: np.ndarray, box: Box, window: int) -> float:
    p, g = _crop(pred, box), _crop(gt, box)
    if p is None or min(p.shape[:2]) < window:
        return math.nan  # SSIM is undefined on boxes smaller than its window
    return fn(p, g)


def ssim_roi(pred: np.ndarray, gt: np.ndarray, box: Box) -> float:
    """:func:`ssim` on the box; NaN if it is unknown or smaller than the 11-pixel window."""
    return _ssim_on_box(ssim, pred, gt, box, 11)


def ssim_animeinterp_roi(pred: np.ndarray, gt: np.ndarray, box: Box) -> float:
    """:func:`ssim_animeinterp` on the box, as AnimeInterp's RoI SSIM; NaN if unknown or < 7 px."""
    return _ssim_on_box(ssim_animeinterp, pred, gt, box, 7)


def make_lpips(device: str = "cpu") -> Callable[[np.ndarray, np.ndarray], float] | None:
    """LPIPS (AlexNet, v0.1) as ``fn(pred, gt) -> float`` if it can run without downloading.

    Needs the ``lpips`` package (it carries the learned linear weights) and torchvision's AlexNet
    ImageNet weights already in ``torch.hub.get_dir()/checkpoints``. Otherwise logs one message
    saying what is missing and returns None; nothing is ever downloaded.
    """
    import torch
    from torchvision.models import AlexNet_Weights

    weights_file = Path(torch.hub.get_dir()) / "checkpoints" / Path(AlexNet_Weights.IMAGENET1K_V1.url).name
    missing = []
    if importlib.util.find_spec("lpips") is None:
        missing.append("the 'lpips' package is not installed")
    if not weights_file.is_file():
        missing.append(f"AlexNet weights are not at {weights_file}")
    if missing:
        logger.info("LPIPS skipped: %s (nothing is downloaded at run time).", "; ".join(missing))
        return None

    import lpips  # noqa: PLC0415 - optional dependency, checked above

    net = lpips.LPIPS(net="alex", verbose=False).to(device).eval()

    def lpips_distance(pred: np.ndarray, gt: np.ndarray) -> float:
        p, g = _pair(pred, gt)
        # LPIPS expects (1, 3, H, W) in [-1, 1].
        tp, tg = (torch.from_numpy(a).float().permute(2, 0, 1)[None].to(device) * 2 - 1 for a in (p, g))
        with torch.no_grad():
            return float(net(tp, tg).item())

    return lpips_distance
