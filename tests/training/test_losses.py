"""Losses: each term measures what it claims, the flow loss prefers the true flow, and the VGG
perceptual loss loads weights from disk (never downloads) or is skipped with one warning."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from animvfi_pipeline.errors import CheckpointError
from animvfi_pipeline.models.warp import warp
from animvfi_pipeline.training.losses import (
    VGGPerceptualLoss,
    census_loss,
    charbonnier,
    epe,
    flow_loss,
    make_perceptual_loss,
    occlusion_mask_from_flows,
    ssim_loss,
    vfi_loss,
)

H, W = 48, 64


pytestmark = pytest.mark.usefixtures("one_thread")
SIDE, X0, Y0, MOVE = 16, 12, 16, 6  # a square moving MOVE pixels to the right


def textured(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.avg_pool2d(torch.rand(1, 3, H + 2, W + 2, generator=g), 3, 1)


def square_scene() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two frames of a red square on a textured static background and their exact flows."""
    bg = textured(1)
    img0, img1 = bg.clone(), bg.clone()
    colour = torch.tensor([0.9, 0.1, 0.1]).view(1, 3, 1, 1)
    img0[..., Y0:Y0 + SIDE, X0:X0 + SIDE] = colour
    img1[..., Y0:Y0 + SIDE, X0 + MOVE:X0 + MOVE + SIDE] = colour
    flow_01 = torch.zeros(1, 2, H, W)
    flow_10 = torch.zeros(1, 2, H, W)
    flow_01[:, 0, Y0:Y0 + SIDE, X0:X0 + SIDE] = MOVE
    flow_10[:, 0, Y0:Y0 + SIDE, X0 + MOVE:X0 + MOVE + SIDE] = -MOVE
    return img0, img1, flow_01, flow_10


def test_charbonnier_grows_with_the_error():
    a = textured()
    assert charbonnier(a, a) < 2e-3
    assert charbonnier(a, a + 0.05) < charbonnier(a, a + 0.2)
    assert charbonnier(a, a + 0.2) == pytest.approx(0.2, rel=1e-3)


def test_census_ignores_a_brightness_offset_but_sees_a_shift():
    a = textured() * 0.6
    brighter = a + 0.3
    shifted = torch.roll(a, shifts=3, dims=-1)
    assert census_loss(a, brighter) < 1e-4
    assert charbonnier(a, brighter) > 0.25
    assert census_loss(a, shifted) > 0.05


def test_ssim_loss_matches_skimage_gaussian_ssim():
    a = textured(0)
    b = (a + 0.1 * torch.randn(a.shape, generator=torch.Generator().manual_seed(3))).clamp(0, 1)
    expected = structural_similarity(
        a[0].permute(1, 2, 0).numpy(), b[0].permute(1, 2, 0).numpy(), channel_axis=2,
        gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0,
    )
    # skimage averages over a cropped border of the same width as our valid region
    assert 1 - float(ssim_loss(a, b)) == pytest.approx(expected, abs=1e-4)
    assert float(ssim_loss(a, a)) == pytest.approx(0.0, abs=1e-5)


def test_epe_is_the_mean_vector_length_over_the_mask():
    gt = torch.zeros(2, 2, 8, 8)
    flow = gt.clone()
    flow[:, 0], flow[:, 1] = 3.0, 4.0
    assert float(epe(flow, gt)) == pytest.approx(5.0, rel=1e-5)
    flow[..., :4, :] = 0.0  # the top half is exact, the bottom half 5 px off
    mask = torch.zeros(2, 1, 8, 8)
    mask[..., :4, :] = 1.0
    assert float(epe(flow, gt, mask)) == pytest.approx(0.0, abs=1e-4)
    assert float(epe(flow, gt)) == pytest.approx(2.5, rel=1e-4)


def test_occlusion_mask_marks_the_background_the_square_covers():
    _, _, flow_01, flow_10 = square_scene()
    occ = occlusion_mask_from_flows(flow_01, flow_10)[0, 0]
    covered = torch.zeros(H, W, dtype=torch.bool)  # background of frame0 under the square in frame1
    covered[Y0:Y0 + SIDE, X0 + SIDE:X0 + SIDE + MOVE] = True
    assert occ[covered].mean() > 0.9
    assert occ[~covered].mean() < 0.02
    assert not occ.requires_grad


def test_flow_loss_prefers_the_true_flow_with_and_without_ground_truth():
    img0, img1, flow_01, flow_10 = square_scene()
    gt = torch.stack((flow_01, flow_10), dim=1)
    zero = torch.zeros_like(flow_01)
    for gt_flows in (gt, None):
        good, parts = flow_loss([(flow_01, flow_10)], gt_flows, img0, img1)
        bad, _ = flow_loss([(zero, zero)], gt_flows, img0, img1)
        assert good < bad
        assert set(parts) == {"epe", "photo", "smooth", "total"}
    assert flow_loss([(flow_01, flow_10)], gt, img0, img1)[1]["epe"] == pytest.approx(0.0, abs=1e-3)


def test_flow_loss_ignores_gt_of_samples_without_flow_and_trains_every_level():
    img0, img1, flow_01, flow_10 = square_scene()
    gt = torch.stack((flow_01, flow_10), dim=1)
    coarse = (torch.zeros_like(flow_01, requires_grad=True), torch.zeros_like(flow_10, requires_grad=True))
    fine = (torch.zeros_like(flow_01, requires_grad=True), torch.zeros_like(flow_10, requires_grad=True))
    total, parts = flow_loss([coarse, fine], gt, img0, img1, gt_valid=torch.tensor([False]))
    assert parts["epe"] == 0.0
    total.backward()
    assert coarse[0].grad.abs().sum() > 0 and fine[0].grad.abs().sum() > 0
    with pytest.raises(ValueError, match="census, charbonnier"):
        flow_loss([fine], gt, img0, img1, photometric="l2")


def test_vfi_loss_sums_the_weighted_terms():
    target = textured(0)
    out = {"pred": textured(1).requires_grad_(True)}
    total, parts = vfi_loss(out, target, {"charbonnier": 1.0, "census": 0.5, "ssim": 0.0})
    assert set(parts) == {"charbonnier", "census", "total"}
    assert float(total.detach()) == pytest.approx(parts["charbonnier"] + 0.5 * parts["census"], rel=1e-5)
    total.backward()
    assert out["pred"].grad is not None
    with pytest.raises(ValueError, match="charbonnier, census, ssim, perceptual"):
        vfi_loss(out, target, {"lpips": 1.0})


@pytest.fixture(scope="module")
def random_vgg19_file(tmp_path_factory):
    """A randomly initialised VGG19 state dict, features only (what we load; 40 MB, not 550)."""
    from torchvision.models import vgg19

    torch.manual_seed(0)
    with torch.device("meta"):
        net = vgg19(weights=None)
    features = net.features[:27].to_empty(device="cpu")
    for m in features:
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight)
            torch.nn.init.zeros_(m.bias)
    path = tmp_path_factory.mktemp("vgg") / "vgg19-random.pth"
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, path)
    return path, features.state_dict()


def test_perceptual_loss_loads_weights_from_the_configured_path(random_vgg19_file):
    path, saved = random_vgg19_file
    loss = make_perceptual_loss(str(path))
    assert isinstance(loss, VGGPerceptualLoss)
    assert torch.equal(loss.features[0].weight, saved["0.weight"])
    assert torch.equal(loss.features[25].weight, saved["25.weight"])
    a, b = textured(0), textured(1)
    pred = a.clone().requires_grad_(True)
    assert float(loss(a, a)) == 0.0
    value = loss(pred, b)
    value.backward()
    assert value > 0
    assert pred.grad.abs().sum() > 0
    assert all(p.grad is None for p in loss.parameters())
    loss.train()
    assert not loss.training  # the loss network never leaves eval mode


def test_perceptual_loss_uses_the_torch_hub_cache(random_vgg19_file, tmp_path, monkeypatch):
    path, _ = random_vgg19_file
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cached = tmp_path / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth"
    cached.parent.mkdir(parents=True)
    cached.symlink_to(path)
    assert isinstance(make_perceptual_loss(None), VGGPerceptualLoss)


def test_missing_vgg_weights_mean_one_warning_and_no_perceptual_loss(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty hub cache
    with caplog.at_level(logging.WARNING):
        assert make_perceptual_loss(None) is None
        assert make_perceptual_loss(tmp_path / "nowhere.pth") is None
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2  # one per call
    assert str(tmp_path / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth") in warnings[0].getMessage()
    assert "training without the perceptual loss" in warnings[1].getMessage()


def test_a_file_that_is_not_vgg19_is_a_clear_error(tmp_path):
    bad = tmp_path / "other.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, bad)
    with pytest.raises(CheckpointError, match="other.pth.*not torchvision VGG19 weights"):
        make_perceptual_loss(bad)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="junk.pth"):
        VGGPerceptualLoss(junk)


def test_warp_with_exact_flow_reconstructs_frame0_away_from_occlusions():
    # Guards the convention the flow loss relies on: warp(img1, flow_01) ~= img0.
    img0, img1, flow_01, flow_10 = square_scene()
    visible = 1 - occlusion_mask_from_flows(flow_01, flow_10)
    err = ((warp(img1, flow_01) - img0).abs() * visible).sum() / visible.sum() / 3
    assert float(err) < 1e-3
    assert np.isfinite(float(census_loss(warp(img1, flow_01), img0, mask=visible)))
