"""Metrics against values worked out by hand, and the AnimeInterp SSIM against skimage itself."""
from __future__ import annotations

import logging
import math
import sys
import types

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from animvfi_pipeline.evaluation import metrics


def _flat(value: float, shape=(16, 16, 3)) -> np.ndarray:
    return np.full(shape, value, dtype=np.float64)


def _smooth_image(seed: int, shape=(32, 40, 3)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coarse = rng.random((shape[0] // 8, shape[1] // 8, 3))
    return np.kron(coarse, np.ones((8, 8, 1)))


def test_psnr_of_a_uniform_error_of_a_tenth_is_20_db():
    # MSE = 0.1^2 = 0.01 -> 10 log10(1 / 0.01) = 20 dB.
    assert metrics.psnr(_flat(0.6), _flat(0.5)) == pytest.approx(20.0)


def test_psnr_of_a_single_wrong_pixel():
    gt = _flat(0.0, (2, 2, 3))
    pred = gt.copy()
    pred[0, 0] = 1.0  # 3 of 12 values off by 1 -> MSE 0.25 -> 10 log10(4) dB
    assert metrics.psnr(pred, gt) == pytest.approx(10 * math.log10(4))


def test_psnr_reads_uint8_on_the_0_255_scale():
    gt = np.full((4, 4, 3), 100, np.uint8)
    pred = np.full((4, 4, 3), 125, np.uint8)
    assert metrics.psnr(pred, gt) == pytest.approx(10 * math.log10(255**2 / 25**2))


def test_identical_images_have_infinite_psnr_and_zero_ie():
    img = _smooth_image(0)
    assert metrics.psnr(img, img) == math.inf
    assert metrics.interpolation_error(img, img) == 0.0


def test_prediction_is_clamped_not_rounded():
    gt = _flat(1.0)
    # 1.3 is clamped to 1.0: a perfect prediction.
    assert metrics.psnr(_flat(1.3), gt) == math.inf
    # 0.5 + 1/1000 is not rounded to the nearest 8-bit level (which would be 128/255).
    pred = _flat(0.501)
    assert metrics.psnr(pred, _flat(0.5)) == pytest.approx(60.0)
    below = _flat(-0.2)
    assert metrics.psnr(below, _flat(0.0)) == math.inf


def test_interpolation_error_is_rms_over_pixels_and_channels_on_0_255():
    gt = _flat(0.0, (1, 2, 3))
    pred = gt.copy()
    pred[0, 0, 0] = 30 / 255  # one of six values off by 30 -> sqrt(900 / 6)
    assert metrics.interpolation_error(pred, gt) == pytest.approx(math.sqrt(150.0))


def test_ssim_animeinterp_is_skimage_with_uniform_7x7_window_and_data_range_2():
    pred, gt = _smooth_image(1), _smooth_image(2)
    pred = np.clip(pred + 0.05 * np.random.default_rng(3).standard_normal(pred.shape), 0, 1)
    expected = structural_similarity(
        pred, gt, channel_axis=2, data_range=2.0, win_size=7, gaussian_weights=False,
        use_sample_covariance=True,
    )
    assert metrics.ssim_animeinterp(pred, gt) == pytest.approx(expected)


def test_ssim_is_gaussian_with_data_range_1_and_lower_than_the_animeinterp_variant():
    pred, gt = _smooth_image(1), _smooth_image(2)
    expected = structural_similarity(
        pred, gt, channel_axis=2, data_range=1.0, gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False,
    )
    assert metrics.ssim(pred, gt) == pytest.approx(expected)
    # The doubled data range of the published protocol inflates SSIM.
    assert metrics.ssim_animeinterp(pred, gt) > metrics.ssim(pred, gt)
    assert metrics.ssim(gt, gt) == pytest.approx(1.0)


def test_roi_box_is_scaled_by_floor_division():
    # 1920x1080 -> 960x540: scale 2; 101 // 2 = 50, 55 // 2 = 27.
    assert metrics.roi_box_scaled((101, 55, 301, 199), (1920, 1080), (960, 540)) == (50, 27, 150, 99)
    # 1280x720 -> 960x540: scale 4/3; 101 -> 75.75, 7 -> 5.25, 202 -> 151.5, 133 -> 99.75 all go down.
    assert metrics.roi_box_scaled((101, 7, 202, 133), (1280, 720), (960, 540)) == (75, 5, 151, 99)


def test_roi_metrics_only_see_the_box():
    gt = _smooth_image(4)
    pred = gt.copy()
    pred[:, 20:] = 1.0 - pred[:, 20:]  # ruin the right half
    box = (2, 3, 16, 20)  # x, y, w, h inside the left half
    assert metrics.psnr_roi(pred, gt, box) == math.inf
    assert metrics.ssim_roi(pred, gt, box) == pytest.approx(1.0)
    assert metrics.ssim_animeinterp_roi(pred, gt, box) == pytest.approx(1.0)
    assert metrics.psnr(pred, gt) < 20
    # The box sits at x = 2..17: with a wrong pixel there the RoI PSNR drops.
    pred[10, 5] = 1.0 - gt[10, 5]
    assert metrics.psnr_roi(pred, gt, box) < 40


def test_unknown_or_too_small_roi_gives_nan():
    img = _smooth_image(5)
    assert math.isnan(metrics.psnr_roi(img, img, (-1, -1, -1, -1)))
    assert math.isnan(metrics.ssim_roi(img, img, (0, 0, 8, 8)))  # smaller than the 11x11 window
    assert not math.isnan(metrics.ssim_animeinterp_roi(img, img, (0, 0, 8, 8)))


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="shape"):
        metrics.psnr(_flat(0.5, (4, 4, 3)), _flat(0.5, (4, 5, 3)))


def test_lpips_without_package_or_weights_is_none_with_one_message(tmp_path, monkeypatch, caplog):
    import torch

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setitem(sys.modules, "lpips", None)  # not importable
    with caplog.at_level(logging.INFO, logger=metrics.__name__):
        assert metrics.make_lpips() is None
    messages = [r.getMessage() for r in caplog.records if r.name == metrics.__name__]
    assert len(messages) == 1 and "LPIPS" in messages[0] and "lpips" in messages[0]
    assert list(tmp_path.iterdir()) == []  # nothing downloaded


def test_lpips_uses_the_package_when_weights_are_local(tmp_path, monkeypatch):
    import torch
    from torchvision.models import AlexNet_Weights

    calls = []

    class FakeLPIPS(torch.nn.Module):
        def __init__(self, net, verbose):
            super().__init__()
            assert net == "alex"

        def forward(self, a, b):
            calls.append((a.min().item(), a.max().item(), tuple(a.shape)))
            return (a - b).abs().mean().reshape(1, 1, 1, 1)

    fake = types.ModuleType("lpips")
    fake.LPIPS = FakeLPIPS
    fake.__spec__ = types.SimpleNamespace(name="lpips")
    monkeypatch.setitem(sys.modules, "lpips", fake)
    monkeypatch.setattr(metrics.importlib.util, "find_spec", lambda name: object())
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    weights = tmp_path / "checkpoints" / AlexNet_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[1]
    weights.parent.mkdir()
    weights.write_bytes(b"")

    fn = metrics.make_lpips()
    assert fn is not None
    value = fn(_flat(1.0), _flat(0.0))
    assert value == pytest.approx(2.0)  # images are handed over in [-1, 1]
    assert calls[0] == (1.0, 1.0, (1, 3, 16, 16))
