"""Synthesis backbones: the three variants build and run at any padded size, the motion gates
follow the warping disagreement, and the transformer bottleneck sees the whole frame."""
from __future__ import annotations

import pytest
import torch

from animvfi_pipeline.models.synthesis import (
    BACKBONES,
    MotionGate,
    TransformerBottleneck,
    build_backbone,
    motion_cues,
    sincos_position_2d,
)

SMALL = dict(widths=(8, 16, 16, 16), head_channels=8, transformer_dim=16, transformer_heads=2,
             transformer_layers=1)



def inputs(b: int, h: int, w: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    img0, img1 = torch.rand(b, 3, h, w, generator=g), torch.rand(b, 3, h, w, generator=g)
    return dict(img0=img0, img1=img1, warped0=img0.clone(), warped1=img0.clone(),
                flow_t0=torch.randn(b, 2, h, w, generator=g), flow_t1=torch.randn(b, 2, h, w, generator=g),
                t=torch.full((b,), 0.5))


@pytest.mark.parametrize("name", BACKBONES)
@pytest.mark.parametrize("size", [(64, 64), (64, 128)])
def test_every_backbone_gives_mask_residual_and_flow_correction(name, size):
    net = build_backbone(name, **SMALL)
    with torch.no_grad():
        out = net(**inputs(2, *size))
    assert out["mask"].shape == (2, 1, *size)
    assert out["residual"].shape == (2, 3, *size)
    assert out["flow_delta"].shape == (2, 4, *size)
    assert 0 < float(out["mask"].min()) and float(out["mask"].max()) < 1
    # one gate per skip connection, finest first, at 1/2, 1/4, 1/8 of the input
    assert [g.shape[-2:] for g in out["gates"]] == [(size[0] // s, size[1] // s) for s in (2, 4, 8)]


def test_unknown_backbone_names_the_valid_ones():
    with pytest.raises(ValueError, match="'vit'.*unet, resunet, transunet"):
        build_backbone("vit")


def test_motion_cues_are_warping_disagreement_and_flow_magnitude():
    x = inputs(1, 16, 16)
    x["warped1"][..., 4:8, 4:8] += 0.3
    cues = motion_cues(x["warped0"], x["warped1"], x["flow_t0"], x["flow_t1"])
    assert torch.allclose(cues[:, 0, 4:8, 4:8], torch.full((4, 4), 0.3), atol=1e-5)
    assert float(cues[:, 0].sum()) == pytest.approx(0.3 * 16, rel=1e-4)
    assert torch.allclose(cues[:, 1], torch.log1p(x["flow_t0"].norm(dim=1)), atol=1e-3)


def test_gate_reacts_to_warping_disagreement_where_it_happens():
    torch.manual_seed(0)
    gate = MotionGate(feat_ch=8)
    skip = torch.rand(1, 8, 32, 32)
    agree = torch.zeros(1, 3, 32, 32)
    disagree = agree.clone()
    disagree[:, 0, 8:16, 8:16] = 0.8  # the warped frames disagree in one patch
    with torch.no_grad():
        _, g_agree = gate(skip, agree)
        _, g_disagree = gate(skip, disagree)
    change = (g_agree - g_disagree).abs()[0, 0]
    assert float(change[8:16, 8:16].mean()) > 1e-3
    assert float(change[20:, 20:].max()) == 0.0  # far from the patch nothing changes


def test_backbone_gates_follow_the_disagreement_of_its_warped_inputs():
    torch.manual_seed(0)
    net = build_backbone("unet", **SMALL)
    x = inputs(1, 64, 64)
    y = {k: v.clone() for k, v in x.items()}
    y["warped1"][..., 8:24, 8:24] = 1.0 - y["warped1"][..., 8:24, 8:24]
    with torch.no_grad():
        finest_x = net(**x)["gates"][0][0, 0]
        finest_y = net(**y)["gates"][0][0, 0]
    change = (finest_x - finest_y).abs()
    assert float(change[4:12, 4:12].mean()) > 10 * float(change[20:, 20:].mean() + 1e-9)


def test_transformer_bottleneck_mixes_information_across_the_whole_frame():
    torch.manual_seed(0)
    block = TransformerBottleneck(ch=16, dim=16, layers=1, heads=2, patch=2)
    torch.nn.init.normal_(block.unembed.weight, std=0.1)  # it starts as identity; make it act
    x = torch.rand(1, 16, 16, 24)
    y = x.clone()
    y[..., :2, :2] += 1.0  # touch one corner token
    with torch.no_grad():
        far = (block(x) - block(y))[..., -4:, -4:].abs()
        assert float(far.max()) > 1e-4  # a conv stack of this depth could not reach the far corner
        assert block(torch.rand(2, 16, 8, 40)).shape == (2, 16, 8, 40)  # any size


def test_position_code_tells_every_token_apart():
    pos = sincos_position_2d(6, 9, 16, "cpu", torch.float32)
    assert pos.shape == (54, 16)
    dist = torch.cdist(pos, pos) + torch.eye(54) * 1e3
    assert float(dist.min()) > 1e-2
