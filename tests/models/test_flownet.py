"""FlowNet: bidirectional flow at input resolution for any size, and it learns real motion."""
from __future__ import annotations

import pytest
import torch

from animvfi_pipeline.data.flow import dis_flow
from animvfi_pipeline.models.flownet import FlowNet, FlowNetConfig, local_cost_volume, resize_flow
from animvfi_pipeline.models.warp import warp
from animvfi_pipeline.training.losses import epe

SMALL = FlowNetConfig(channels=(16, 16, 16), depth=2)



def shifted_pair(dx: int, dy: int, size: int = 64, seed: int = 0):
    """A smooth random texture and the same texture moved by (dx, dy); flow_01 = (dx, dy)."""
    g = torch.Generator().manual_seed(seed)
    big = torch.nn.functional.avg_pool2d(torch.rand(1, 3, size + 24, size + 24, generator=g), 5, 1, 2)
    img0 = big[..., 12:12 + size, 12:12 + size]
    img1 = big[..., 12 - dy:12 - dy + size, 12 - dx:12 - dx + size]
    flow = torch.tensor([float(dx), float(dy)]).view(1, 2, 1, 1).expand(1, 2, size, size)
    return img0, img1, flow


@pytest.mark.parametrize("size", [(37, 53), (64, 96), (1, 5)])
def test_flows_come_back_at_input_size_for_any_size(size):
    net = FlowNet(SMALL)
    img0, img1 = torch.rand(2, 3, *size), torch.rand(2, 3, *size)
    flow_01, flow_10, pyramid = net(img0, img1, return_pyramid=True)
    assert flow_01.shape == flow_10.shape == (2, 2, *size)
    assert len(pyramid) == len(SMALL.scales)
    assert all(f.shape == (2, 2, *size) for level in pyramid for f in level)
    assert torch.equal(pyramid[-1][0], flow_01)
    plain = net(img0, img1)
    assert len(plain) == 2 and torch.equal(plain[0], flow_01)


def test_shifted_pair_helper_follows_the_flow_convention():
    img0, img1, flow = shifted_pair(3, -2)
    inner = (..., slice(4, -4), slice(4, -4))
    assert torch.allclose(warp(img1, flow)[inner], img0[inner], atol=1e-5)


def test_flownet_learns_motion_from_the_images():
    # Two samples move in opposite directions, so a constant output cannot fit both: the network
    # has to read the images (and its levels have to pass flow from coarse to fine).
    torch.manual_seed(0)
    pairs = [shifted_pair(3, 1, seed=1), shifted_pair(-3, -1, seed=2)]
    img0 = torch.cat([p[0] for p in pairs])
    img1 = torch.cat([p[1] for p in pairs])
    gt = torch.cat([p[2] for p in pairs])
    net = FlowNet(SMALL)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    # A decaying rate: at a constant one Adam oscillates, and where it stands after N steps
    # then depends on the CPU's floating-point path.
    steps = 200
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    inner = (..., slice(8, -8), slice(8, -8))
    with torch.no_grad():
        before = float(epe(net(img0, img1)[0][inner], gt[inner]))
    for _ in range(steps):
        f01, f10, pyramid = net(img0, img1, return_pyramid=True)
        loss = sum(epe(a[inner], gt[inner]) + epe(b[inner], -gt[inner]) for a, b in pyramid)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        f01, f10 = net(img0, img1)
    assert before == pytest.approx(float(gt[0, :, 0, 0].norm()), rel=1e-3)  # starts at zero flow
    assert float(epe(f01[inner], gt[inner])) < 0.25 * before
    assert float(epe(f10[inner], -gt[inner])) < 0.25 * before


def test_resize_flow_rescales_vectors_with_the_image():
    flow = torch.zeros(1, 4, 8, 16)
    flow[:, 0], flow[:, 1], flow[:, 2], flow[:, 3] = 1.0, 2.0, -1.0, -2.0
    up = resize_flow(flow, (32, 32))
    assert up.shape == (1, 4, 32, 32)
    assert torch.allclose(up[0, :, 5, 5], torch.tensor([2.0, 8.0, -2.0, -8.0]))


def test_cost_volume_is_zero_exactly_at_the_displacement_of_the_match():
    a = torch.rand(1, 4, 12, 14)
    b = torch.roll(a, shifts=(2, -1), dims=(2, 3))  # b(p + (dx=-1, dy=2)) = a(p)
    cost = local_cost_volume(a, b, radius=3).view(7, 7, 12, 14)  # (dy, dx) offsets -3..3
    inner = cost[..., 3:-3, 3:-3]
    assert float(inner[2 + 3, -1 + 3].abs().max()) == 0.0
    others = torch.cat([inner[dy, dx].flatten() for dy in range(7) for dx in range(7) if (dy, dx) != (5, 2)])
    assert float(others.min()) > 0.0


def test_config_rejects_inconsistent_levels():
    with pytest.raises(ValueError, match="same"):
        FlowNetConfig(scales=(16, 8), channels=(32, 32, 32))
    with pytest.raises(ValueError, match="same"):
        FlowNetConfig(corr_radius=(3, 3))
    assert FlowNetConfig(scales=(8, 4), channels=(8, 8), corr_radius=2).corr_radius == (2, 2)
    with pytest.raises(ValueError, match="powers of two"):
        FlowNetConfig(scales=(4, 8), channels=(32, 32))
    with pytest.raises(ValueError, match="unknown FlowNetConfig fields: width"):
        FlowNetConfig.from_dict({"width": 3})
    assert FlowNetConfig.from_dict(SMALL.to_dict()) == SMALL


def test_dis_init_starts_from_classical_flow_at_full_detail():
    # An untrained network with init="dis" must hand back OpenCV's DIS flow unchanged, at the
    # input resolution (not blurred through the 1/4-scale pyramid), in both directions.
    img0, img1, _ = shifted_pair(5, -3, size=96, seed=3)
    net = FlowNet(FlowNetConfig(channels=(16, 16, 16), depth=2, init="dis", dis_preset="medium"))
    with torch.no_grad():
        f01, f10, pyramid = net(img0, img1, return_pyramid=True)
    as_u8 = lambda x: (x[0].permute(1, 2, 0) * 255).round().byte().numpy()  # noqa: E731
    assert torch.allclose(f01[0], torch.from_numpy(dis_flow(as_u8(img0), as_u8(img1), "medium")), atol=1e-5)
    assert torch.allclose(f10[0], torch.from_numpy(dis_flow(as_u8(img1), as_u8(img0), "medium")), atol=1e-5)
    assert all(torch.allclose(a, f01) for a, _ in pyramid)


def test_dis_init_gets_large_motion_right_where_an_untrained_zero_init_net_cannot():
    img0, img1, gt = shifted_pair(9, 4, size=96, seed=4)
    inner = (..., slice(16, -16), slice(16, -16))
    with torch.no_grad():
        dis01, _ = FlowNet(FlowNetConfig(channels=(16, 16, 16), depth=2, init="dis", dis_preset="medium"))(img0, img1)
        zero01, _ = FlowNet(SMALL)(img0, img1)
    assert float(epe(zero01[inner], gt[inner])) > 9.0
    assert float(epe(dis01[inner], gt[inner])) < 1.0


def test_dis_init_blocks_still_learn_a_correction():
    # The prior is a constant input: gradients reach the blocks, which can move the flow off it.
    img0, img1, gt = shifted_pair(2, 1, size=64, seed=5)
    net = FlowNet(FlowNetConfig(channels=(16, 16, 16), depth=2, init="dis"))
    target = gt + 1.5  # a flow DIS would never output, so only the blocks can produce it
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    inner = (..., slice(8, -8), slice(8, -8))
    with torch.no_grad():
        before = float(epe(net(img0, img1)[0][inner], target[inner]))
    for _ in range(60):
        loss = epe(net(img0, img1)[0][inner], target[inner])
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * before


def test_config_rejects_an_unknown_init():
    with pytest.raises(ValueError, match="init"):
        FlowNetConfig(init="raft")
    with pytest.raises(ValueError, match="dis_preset"):
        FlowNetConfig(init="dis", dis_preset="slow")
