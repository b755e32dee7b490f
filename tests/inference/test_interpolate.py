"""The clip driver with stand-in interpolators, and the model wrapper's memory bounds."""
from __future__ import annotations

import weakref
from fractions import Fraction

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from animvfi_pipeline.errors import DataError
from animvfi_pipeline.inference.interpolate import (
    InterpolateConfig,
    ModelInterpolator,
    ModelSettings,
    interpolate_clip,
    render,
    tiled,
    to_tensor,
)
from animvfi_pipeline.inference.schedule import plan_frames
from animvfi_pipeline.models.flownet import FlowNetConfig
from animvfi_pipeline.models.vfi import VFIConfig, VFIModel
from animvfi_pipeline.models.warp import warp


def square(x: float, h: int = 48, w: int = 64, colour=(250, 200, 40), bg=(30, 60, 120)) -> np.ndarray:
    """A square whose left edge is at ``x`` (sub-pixel, anti-aliased by 8x supersampling)."""
    big = np.full((h * 8, w * 8, 3), bg, np.uint8)
    x0 = int(round(x * 8))
    big[12 * 8:36 * 8, x0:x0 + 16 * 8] = colour
    return cv2.resize(big, (w, h), interpolation=cv2.INTER_AREA)


def blend_interpolator(calls=None):
    def interpolate(img0, img1, ts):
        if calls is not None:
            calls.append(list(ts))
        return [np.rint((1 - t) * img0 + t * img1).astype(np.uint8) for t in ts]
    return interpolate


def write_folder(folder, frames):
    folder.mkdir()
    for i, f in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:04d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    return folder


def read_folder(folder):
    return [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in sorted(folder.glob("*.png"))]


def test_render_keeps_only_a_few_frames_alive_however_long_the_clip():
    alive = 0
    peak = 0

    def released():
        nonlocal alive
        alive -= 1

    pictures = [square(x) for x in range(0, 40, 4)]

    def frames(n):
        nonlocal alive, peak
        for i in range(n):
            peak = max(peak, alive)  # frames are freed by reference counting, no gc pass needed
            f = pictures[i % len(pictures)].copy().view(Frame)
            alive += 1
            weakref.finalize(f, released)
            yield f

    n = 200
    plan = plan_frames(n, Fraction(24), Fraction(60), cuts=[50], duplicates=[10, 11, 12])
    written = []
    render(plan, frames(n), blend_interpolator(), lambda f: written.append(f.shape))
    assert len(written) == len(plan) == 500
    assert peak <= 3


class Frame(np.ndarray):
    """An ndarray subclass, so that test frames can carry weak references."""


def test_render_sends_all_in_betweens_of_a_pair_in_one_call():
    calls = []
    plan = plan_frames(3, Fraction(10), Fraction(40))
    render(plan, [square(0), square(4), square(8)], blend_interpolator(calls), lambda f: None)
    assert calls == [[0.25, 0.5, 0.75], [0.25, 0.5, 0.75]]


def test_clip_with_a_cut_holds_frames_at_the_cut(tmp_path):
    shot_a = [square(3 * i) for i in range(4)]
    shot_b = [square(40 - 3 * i, colour=(20, 240, 90), bg=(200, 40, 160)) for i in range(4)]
    src = write_folder(tmp_path / "in", shot_a + shot_b)
    result = interpolate_clip(src, tmp_path / "out", blend_interpolator(),
                              InterpolateConfig(factor=4, progress=False))
    out = read_folder(tmp_path / "out")
    assert len(out) == result.n_output == 32 and result.cuts == [4]
    # Output frames 13..15 lie between the last frame of shot A and the first of shot B.
    for j in (13, 14, 15):
        assert any(np.array_equal(out[j], f) for f in (shot_a[3], shot_b[0]))
    assert np.array_equal(out[14], shot_b[0]) and np.array_equal(out[13], shot_a[3])
    assert not np.array_equal(out[17], shot_b[0]) and not np.array_equal(out[17], shot_b[1])  # B still moves


def test_dedup_smooths_a_clip_on_twos(tmp_path):
    drawings = [square(6 * k) for k in range(5)]
    src = write_folder(tmp_path / "in", [d for d in drawings for _ in range(2)])
    oracle = lambda a, b, ts: [square(6 * (_left(a) + t * (_left(b) - _left(a))) / 6) for t in ts]  # noqa: E731
    plain = interpolate_clip(src, tmp_path / "plain", oracle, InterpolateConfig(factor=2, progress=False))
    smooth = interpolate_clip(src, tmp_path / "smooth", oracle,
                              InterpolateConfig(factor=2, dedup=True, progress=False))
    assert plain.duplicates == smooth.duplicates == [1, 3, 5, 7, 9]

    def motion(folder):
        return np.diff([_left(f) for f in read_folder(folder)][:16])

    assert (motion(tmp_path / "plain") < 0.3).sum() >= 6  # the picture stalls on every hold: stutter
    assert np.allclose(motion(tmp_path / "smooth"), 1.5, atol=0.3)  # even 1.5 px per output frame


def _left(img: np.ndarray) -> float:
    """Sub-pixel left edge of the square (from its anti-aliased coverage of row 24)."""
    row = img[24, :, 0].astype(float)
    coverage = (row - 30) / (250 - 30)
    first = int(np.argmax(coverage > 0.01))
    return first + 1 - coverage[first]


def test_interrupted_run_leaves_nothing_behind(tmp_path):
    src = write_folder(tmp_path / "in", [square(2 * i) for i in range(6)])
    calls = []

    def flaky(img0, img1, ts):
        calls.append(ts)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return blend_interpolator()(img0, img1, ts)

    for out in (tmp_path / "out.mp4", tmp_path / "frames"):
        calls.clear()
        with pytest.raises(KeyboardInterrupt):
            interpolate_clip(src, out, flaky, InterpolateConfig(progress=False))
        assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


def test_a_single_frame_is_refused(tmp_path):
    src = write_folder(tmp_path / "one", [square(0)])
    with pytest.raises(DataError, match=r"one: has 1 frame; at least two"):
        interpolate_clip(src, tmp_path / "out.mp4", blend_interpolator(), InterpolateConfig(progress=False))
    assert not (tmp_path / "out.mp4").exists()


class LinearModel(torch.nn.Module):
    """Stands in for VFIModel: a cross-fade, so every output pixel depends only on its input pixels."""

    def __init__(self):
        super().__init__()
        self.batches = []

    def inference(self, img0, img1, t):
        self.batches.append(t.tolist())
        tt = t.view(-1, 1, 1, 1)
        return (1 - tt) * img0 + tt * img1


def test_model_interpolator_batches_and_keeps_t_order():
    model = LinearModel()
    interp = ModelInterpolator(model, ModelSettings(device="cpu", batch_size=2))
    a, b = square(0), square(20)
    out = interp(a, b, [0.25, 0.5, 0.75])
    assert model.batches == [[0.25, 0.5], [0.75]]
    for t, frame in zip([0.25, 0.5, 0.75], out):
        assert np.abs(frame.astype(float) - ((1 - t) * a + t * b)).max() <= 1


def test_flips_setting_reaches_the_model_and_none_leaves_the_models_own():
    class Recording(LinearModel):
        def inference(self, img0, img1, t, **kw):
            self.batches.append(kw)
            return super().inference(img0, img1, t)

    for flips, passed in ((None, {}), (1, {"flips": 1}), (4, {"flips": 4})):
        model = Recording()
        ModelInterpolator(model, ModelSettings(device="cpu", flips=flips))(square(0), square(20), [0.5])
        assert model.batches[0] == passed


def test_flow_candidates_setting_reaches_the_model_and_none_leaves_the_models_own():
    cfg = VFIConfig(flow=FlowNetConfig(channels=(8, 8, 8), depth=1, init="dis", dis_preset="fine"),
                    backbone="none", flow_candidates=["fine", "fine-pca"])
    for setting, expected in ((None, ["fine", "fine-pca"]), ([], []), (["fine-alpha10"], ["fine-alpha10"])):
        interpolator = ModelInterpolator(VFIModel(cfg), ModelSettings(device="cpu", flow_candidates=setting))
        assert interpolator.model.cfg.flow_candidates == expected
        assert interpolator.model.flownet.cfg.dis_preset == "fine"  # the model's own preset is untouched
    assert cfg.flow_candidates == ["fine", "fine-pca"]  # the config it was built from is not changed


def test_warp_setting_reaches_the_model_and_none_leaves_the_models_own():
    cfg = VFIConfig(flow=FlowNetConfig(channels=(8, 8, 8), depth=1, init="dis"), backbone="none", warp_mode="bicubic")
    for setting, expected in ((None, "bicubic"), ("bilinear", "bilinear")):
        assert ModelInterpolator(VFIModel(cfg), ModelSettings(device="cpu", warp_mode=setting)).model.cfg.warp_mode == expected
    assert cfg.warp_mode == "bicubic"
    with pytest.raises(ValueError, match="warp_mode"):
        ModelInterpolator(VFIModel(cfg), ModelSettings(device="cpu", warp_mode="nearest"))


def test_tiles_blend_back_to_the_whole_frame():
    rng = np.random.default_rng(0)
    img0, img1 = (torch.from_numpy(rng.random((2, 3, 100, 150), dtype=np.float32)) for _ in range(2))
    fn = lambda a, b: 0.3 * a + 0.7 * b  # noqa: E731
    out = tiled(fn, img0, img1, tile=64, overlap=16)
    assert torch.allclose(out, fn(img0, img1), atol=1e-6)


class TranslationModel(VFIModel):
    """A VFIModel whose forward pass knows that everything moves right by ``dx`` full-size pixels."""

    def __init__(self, dx: float, full_width: int):
        super().__init__(VFIConfig(flow=FlowNetConfig(channels=(8, 8, 8), depth=1, corr_radius=0), widths=(8, 8, 8, 8)))
        self.dx, self.full_width = dx, full_width

    def forward(self, img0, img1, t):
        d = self.dx * img0.shape[-1] / self.full_width  # the motion at the size it is given
        tt = t.view(-1, 1, 1, 1)
        flow = torch.zeros_like(img0[:, :2])
        flow_t0, flow_t1 = flow.clone(), flow.clone()
        flow_t0[:, 0], flow_t1[:, 0] = (-tt * d)[:, 0], ((1 - tt) * d)[:, 0]
        mask = torch.full_like(img0[:, :1], 0.5)
        w0, w1 = warp(img0, flow_t0), warp(img1, flow_t1)
        pred = ((1 - tt) * w0 + tt * w1) / ((1 - tt) * 0.5 + tt * 0.5) * 0.5
        return dict(pred=pred, flow_t0=flow_t0, flow_t1=flow_t1, mask=mask, warped0=w0, warped1=w1)


def test_reduced_flow_scale_still_gives_a_sharp_full_size_frame():
    h, w = 96, 128
    rng = np.random.default_rng(0)
    texture = np.kron(rng.integers(0, 256, (h // 2, 2 * w // 2, 3)), np.ones((2, 2, 1))).astype(np.uint8)
    img0, truth, img1 = (np.ascontiguousarray(texture[:, w - x:2 * w - x]) for x in (0, 8, 16))  # moving right
    x0, x1 = to_tensor(img0), to_tensor(img1)
    t = torch.tensor([0.5])
    pred = TranslationModel(16, w).inference(x0, x1, t, scale=0.5)
    assert pred.shape == (1, 3, h, w)
    inner = (slice(None), slice(None), slice(4, -4), slice(20, -20))  # away from the borders
    err = (pred[inner] * 255 - to_tensor(truth)[inner] * 255).abs().mean()
    # Shrinking the frames, interpolating and enlarging the result would lose the fine texture:
    small = TranslationModel(16, w)(*(F.interpolate(x, scale_factor=0.5, mode="area") for x in (x0, x1)), t)["pred"]
    blurry = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    blurry_err = (blurry[inner] * 255 - to_tensor(truth)[inner] * 255).abs().mean()
    assert err < 2.0 and blurry_err > 20.0
