"""Baselines on scenes whose middle frame is known exactly."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from animvfi_pipeline.evaluation import baselines
from animvfi_pipeline.evaluation.metrics import psnr


def _texture(h: int, w: int, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).random((h, w, 3)).astype(np.float32)
    noise = cv2.GaussianBlur(noise, (0, 0), 4.0)
    noise = (noise - noise.min()) / (noise.max() - noise.min())
    return (noise * 255).astype(np.uint8)


def _moving_square(x0: int, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A textured 48x48 square moving right by ``step`` per half frame over a still background,
    with the exact flows between frame 0 and frame 1."""
    h, w = 128, 160
    background, square = _texture(h, w, 1), _texture(48, 48, 2)

    def frame(x: int) -> np.ndarray:
        img = background.copy()
        img[40:88, x : x + 48] = square
        return img

    flow_01 = np.zeros((2, h, w), np.float32)
    flow_01[0, 40:88, x0 : x0 + 48] = 2 * step
    flow_10 = np.zeros((2, h, w), np.float32)
    flow_10[0, 40:88, x0 + 2 * step : x0 + 2 * step + 48] = -2 * step
    return frame(x0), frame(x0 + step), frame(x0 + 2 * step), flow_01, flow_10


@pytest.mark.parametrize("fn", [baselines.repeat, baselines.blend, baselines.classical_flow])
def test_every_baseline_returns_a_float_image_in_unit_range(fn):
    img0, _, img1, _, _ = _moving_square(40, 4)
    pred = fn(img0, img1, 0.5)
    assert pred.shape == img0.shape and pred.dtype == np.float32
    assert 0.0 <= pred.min() and pred.max() <= 1.0


def test_repeat_and_blend():
    img0 = np.full((2, 2, 3), 10, np.uint8)
    img1 = np.full((2, 2, 3), 21, np.uint8)
    np.testing.assert_allclose(baselines.repeat(img0, img1, 0.5), 10 / 255)
    np.testing.assert_allclose(baselines.blend(img0, img1, 0.5), 15.5 / 255, rtol=1e-6)  # not rounded


def test_classical_flow_beats_blend_on_a_translating_texture():
    texture = _texture(96, 140, 3)
    img0, mid, img1 = texture[:, 0:128], texture[:, 3:131], texture[:, 6:134]
    classical = psnr(baselines.classical_flow(img0, img1, 0.5), mid)
    blended = psnr(baselines.blend(img0, img1, 0.5), mid)
    assert classical > blended + 5.0


def test_exact_flow_recovers_the_middle_frame_around_occlusions():
    img0, mid, img1, flow_01, flow_10 = _moving_square(40, 6)
    pred = baselines.interpolate_with_flow(img0, img1, flow_01, flow_10, 0.5)
    # The background the square uncovers and covers is taken from the one frame that shows it.
    assert psnr(pred, mid) > 45.0


def test_exact_flow_at_other_times_and_the_endpoints():
    img0, _, img1, flow_01, flow_10 = _moving_square(40, 8)
    quarter = _moving_square(40, 4)[1]  # square at 40 + 4 = a quarter of the way to 56
    assert psnr(baselines.interpolate_with_flow(img0, img1, flow_01, flow_10, 0.25), quarter) > 45.0
    np.testing.assert_allclose(baselines.interpolate_with_flow(img0, img1, flow_01, flow_10, 0.0), img0 / 255, atol=1e-5)
    np.testing.assert_allclose(baselines.interpolate_with_flow(img0, img1, flow_01, flow_10, 1.0), img1 / 255, atol=1e-5)


def test_unknown_dis_preset_is_rejected():
    img = _texture(32, 32, 5)
    with pytest.raises(ValueError, match="preset"):
        baselines.classical_flow(img, img, 0.5, baselines.ClassicalFlowConfig(preset="slowest"))


def test_model_predictor_feeds_the_model_unit_float_tensors():
    import torch

    class HalfWay(torch.nn.Module):
        def inference(self, img0, img1, t):
            assert img0.shape == (1, 3, 4, 5) and img0.dtype == torch.float32
            return img0 + t * (img1 - img0) + 0.95  # 1.05: out of range on purpose

    img0 = np.zeros((4, 5, 3), np.uint8)
    img1 = np.full((4, 5, 3), 102, np.uint8)
    pred = baselines.model_predictor(HalfWay())(img0, img1, 0.25)
    assert pred.shape == (4, 5, 3)
    np.testing.assert_allclose(pred, 1.0)  # clamped
