"""Flow helpers: resizing keeps vectors pointing at the right pixels, DIS follows the convention."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from animvfi_pipeline.data.flow import (
    best_dis_flow_pair,
    dis_flow,
    dis_flow_pair,
    flow_to_color,
    grey_pair,
    photometric_error,
    resize_flow,
)
from animvfi_pipeline.models.warp import warp


def _smooth_image(w: int, h: int) -> np.ndarray:
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack(
        [
            127 + 100 * np.sin(xs / 7.0) * np.cos(ys / 5.0),
            127 + 100 * np.cos(xs / 9.0 + ys / 11.0),
            127 + 100 * np.sin((xs + 2 * ys) / 13.0),
        ],
        axis=-1,
    )
    return np.clip(img, 0, 255).astype(np.uint8)


def _warp_np(img: np.ndarray, flow: np.ndarray) -> np.ndarray:
    t = torch.from_numpy(img).permute(2, 0, 1)[None].float()
    return warp(t, torch.from_numpy(flow)[None]).squeeze(0).permute(1, 2, 0).numpy()


def test_resize_flow_scales_each_axis_by_its_own_factor():
    flow = np.stack([np.full((20, 40), 4.0, np.float32), np.full((20, 40), -2.0, np.float32)])
    out = resize_flow(flow, (20, 60))  # width halves, height triples
    assert out.shape == (2, 60, 20) and out.dtype == np.float32
    np.testing.assert_allclose(out[0], 2.0, atol=1e-5)
    np.testing.assert_allclose(out[1], -6.0, atol=1e-5)


def test_resized_flow_still_warps_resized_frames_onto_each_other():
    # A smooth scene moved by (dx, dy); shrink x and stretch y, then check the resized flow
    # still brings resized frame3 back onto resized frame1. Swapping the axis factors would not.
    h, w, dx, dy = 60, 96, 6, -3
    big = _smooth_image(w + 40, h + 40)
    f1 = big[20 : 20 + h, 20 : 20 + w]
    f3 = big[20 - dy : 20 - dy + h, 20 - dx : 20 - dx + w]  # f3(p + d) = f1(p)
    flow13 = np.stack([np.full((h, w), dx, np.float32), np.full((h, w), dy, np.float32)])
    inner = (slice(10, -10), slice(10, -10))  # away from samples that leave the frame
    assert np.abs(_warp_np(f3, flow13) - f1)[inner].mean() < 1.0

    size = (48, 90)  # x by 0.5, y by 1.5
    import cv2

    r1 = cv2.resize(f1, size, interpolation=cv2.INTER_LINEAR).astype(np.float32)
    r3 = cv2.resize(f3, size, interpolation=cv2.INTER_LINEAR)
    good = resize_flow(flow13, size)
    sx, sy = size[0] / w, size[1] / h
    swapped = np.stack([good[0] / sx * sy, good[1] / sy * sx])  # the student project's bug
    err_good = np.abs(_warp_np(r3, good) - r1)[inner].mean()
    err_swapped = np.abs(_warp_np(r3, swapped) - r1)[inner].mean()
    assert err_good < 2.0
    assert err_swapped > 3 * err_good


def test_resize_flow_rejects_wrong_shape():
    with pytest.raises(ValueError, match="shape"):
        resize_flow(np.zeros((10, 10, 2), np.float32), (5, 5))


@pytest.mark.parametrize("preset", ["ultrafast", "medium", "fine"])
def test_dis_flow_recovers_a_translation_in_the_project_convention(preset):
    h, w, dx, dy = 96, 128, 5, 3
    big = _smooth_image(w + 20, h + 20)
    f1 = big[10 : 10 + h, 10 : 10 + w]
    f3 = big[10 - dy : 10 - dy + h, 10 - dx : 10 - dx + w]
    flow13 = dis_flow(f1, f3, preset)
    assert flow13.shape == (2, h, w) and flow13.dtype == np.float32
    inner = (slice(16, -16), slice(16, -16))
    assert abs(np.median(flow13[0][inner]) - dx) < 0.5
    assert abs(np.median(flow13[1][inner]) - dy) < 0.5
    recon = _warp_np(f3, flow13)
    assert np.abs(recon - f1)[inner].mean() < 3.0


def test_the_fine_preset_interpolates_cartoons_better_than_medium():
    # Outlines are a few pixels wide: a flow that stops at half resolution smears them across
    # motion boundaries, and the in-between shows it. (EPE hardly differs: flat interiors
    # dominate it, and there any flow that keeps the colour is as good as the truth.)
    from animvfi_pipeline.data.synthetic_builder import make_scene
    from animvfi_pipeline.evaluation.baselines import interpolate_with_flow

    psnr = {"medium": [], "fine": []}
    for seed in range(1, 7):
        scene = make_scene(seed, 320, 180, level=1, style=("cel", "watercolor")[seed % 2])
        f0, mid, f1 = (scene.render(t) for t in (0.0, 0.5, 1.0))
        for preset in psnr:
            pred = interpolate_with_flow(f0, f1, dis_flow(f0, f1, preset), dis_flow(f1, f0, preset), 0.5)
            psnr[preset].append(-10 * np.log10(np.mean((pred - mid / 255.0) ** 2)))
    assert np.mean(psnr["fine"]) > np.mean(psnr["medium"]) + 0.3, psnr


def _equal_luma_pair(shift: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """A disc painted red on a green ground of the same 8-bit luminance (119), moved ``shift``
    pixels right: grey DIS cannot see the disc, a colour check can."""
    h, w = 96, 128
    ys, xs = np.mgrid[0:h, 0:w]
    frames = []
    for cx in (60, 60 + shift):
        img = np.empty((h, w, 3), np.uint8)
        img[:] = (60, 160, 60)
        disc = (xs - cx) ** 2 + (ys - 48) ** 2 < 22 ** 2
        img[disc] = (200, 80, 104)
        frames.append(img)
    return frames[0], frames[1]


def test_the_pca_projection_separates_paints_that_luminance_merges():
    a, b = _equal_luma_pair()
    disc, ground = (48, 60), (5, 5)
    luma_a, _ = grey_pair(a, b, "luma")
    pca_a, pca_b = grey_pair(a, b, "pca")
    assert luma_a[disc] == luma_a[ground]
    assert abs(int(pca_a[disc]) - int(pca_a[ground])) > 200
    # One mapping for both frames: the same paint gets the same grey in each.
    assert pca_a[ground] == pca_b[ground]


def test_the_best_candidate_is_the_flow_that_explains_the_colours():
    a, b = _equal_luma_pair(shift=4)
    luma_only = dis_flow_pair(a, b, "fine")
    best = best_dis_flow_pair(a, b, ("fine", "fine-pca"))
    errors = {name: photometric_error(a, b, flow[:2]) + photometric_error(b, a, flow[2:])
              for name, flow in (("fine", luma_only), ("best", best))}
    assert errors["best"] < errors["fine"], errors
    inside = (slice(40, 56), slice(56, 68))  # inside the disc in both frames
    assert abs(np.median(luma_only[0][inside])) < 0.5  # grey DIS: nothing moved
    assert abs(np.median(best[0][inside]) - 4) < 1.0  # frame 0 -> 1: the disc moved right
    assert abs(np.median(best[2][inside]) + 4) < 1.0
    # A single candidate is plain DIS.
    np.testing.assert_array_equal(best_dis_flow_pair(a, b, ("fine",)), luma_only)


def test_dis_flow_rejects_unknown_preset_and_mismatched_images():
    img = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(ValueError, match="preset"):
        dis_flow(img, img, "slowest")
    with pytest.raises(ValueError, match="shape"):
        dis_flow(img, np.zeros((16, 17, 3), np.uint8))


def test_flow_to_color_white_at_rest_and_direction_sets_hue():
    flow = np.zeros((2, 8, 16), np.float32)
    flow[0, :, 8:] = 3.0  # right half moves right
    flow[0, :4, :4] = -3.0  # a corner moves left
    rgb = flow_to_color(flow)
    assert rgb.shape == (8, 16, 3) and rgb.dtype == np.uint8
    assert (rgb[6, 5] == 255).all()  # no motion
    right, left = rgb[0, 12].astype(int), rgb[0, 0].astype(int)
    assert np.abs(right - left).sum() > 200  # opposite directions, clearly different colours
    # A shared scale: half the maximum motion is paler than the maximum.
    pale = flow_to_color(flow * 0.5, max_flow=3.0)
    assert pale[0, 12].astype(int).sum() > right.sum()
