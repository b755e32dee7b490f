"""VFIModel: intermediate flows point the right way, t works per sample, every backbone trains
and infers at any size, and a frozen flow network stays frozen."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from animvfi_pipeline.models.flownet import FlowNet, FlowNetConfig
from animvfi_pipeline.models.vfi import VFIConfig, VFIModel, intermediate_flows
from animvfi_pipeline.models.warp import warp
from animvfi_pipeline.training.losses import charbonnier

H, W = 64, 96
SIDE, X0, Y0, MOVE = 32, 20, 16, 4  # the square moves MOVE pixels right between t=0 and t=1
TINY = dict(flow=FlowNetConfig(channels=(8, 8, 8), depth=1), widths=(8, 16, 16, 16), head_channels=8,
            transformer_dim=16, transformer_heads=2, transformer_layers=1)



def texture() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return F.avg_pool2d(torch.rand(1, 3, SIDE + 2, SIDE + 2, generator=g), 3, 1)


def frame(t: float, move: int = MOVE, textured: bool = True) -> torch.Tensor:
    """The scene at time t: a square at x = X0 + move * t on a flat background."""
    img = torch.full((1, 3, H, W), 0.5)
    x = X0 + round(move * t)
    img[..., Y0:Y0 + SIDE, x:x + SIDE] = texture() if textured else torch.tensor([0.9, 0.1, 0.1]).view(1, 3, 1, 1)
    return img


def exact_flows() -> tuple[torch.Tensor, torch.Tensor]:
    flow_01, flow_10 = torch.zeros(1, 2, H, W), torch.zeros(1, 2, H, W)
    flow_01[:, 0, Y0:Y0 + SIDE, X0:X0 + SIDE] = MOVE
    flow_10[:, 0, Y0:Y0 + SIDE, X0 + MOVE:X0 + MOVE + SIDE] = -MOVE
    return flow_01, flow_10


class GivenFlows(nn.Module):
    """Stands in for FlowNet and returns the exact flows, to test everything after it."""

    multiple = 1

    def __init__(self, flow_01: torch.Tensor, flow_10: torch.Tensor):
        super().__init__()
        self.flow_01, self.flow_10 = flow_01, flow_10

    def prior(self, img0, img1):
        return None

    def forward(self, img0, img1, prior=None):
        b = img0.shape[0]
        return self.flow_01.expand(b, -1, -1, -1), self.flow_10.expand(b, -1, -1, -1)


def err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().mean())


def test_intermediate_flows_warp_both_frames_onto_the_middle_frame():
    img0, img1, mid = frame(0), frame(1), frame(0.5)
    flow_t0, flow_t1 = intermediate_flows(*exact_flows(), torch.tensor([0.5]))
    from_0, from_1 = warp(img0, flow_t0), warp(img1, flow_t1)
    blend_err = err(0.5 * (img0 + img1), mid)
    assert err(from_0, mid) < 0.25 * blend_err
    assert err(from_1, mid) < 0.25 * blend_err
    assert err(0.5 * (from_0 + from_1), mid) < 0.2 * blend_err


def test_splatted_flows_move_the_square_as_a_whole_where_the_linear_estimate_splits_it():
    # The linear estimate reads frame 0's flow at the pixel of frame t: where the square has
    # arrived by t but was not at t = 0 it reads the background's zero motion (a double edge).
    # Splatting sends the square's pixels where they are at t.
    from animvfi_pipeline.models.splat import splatted_flows

    img0, img1, mid = frame(0), frame(1), frame(0.5)
    t = torch.tensor([0.5])
    lin_t0, lin_t1 = intermediate_flows(*exact_flows(), t)
    spl_t0, spl_t1 = splatted_flows(*exact_flows(), t)
    for img, lin, spl in ((img0, lin_t0, spl_t0), (img1, lin_t1, spl_t1)):
        assert err(warp(img, spl), mid) < 0.5 * err(warp(img, lin), mid)
        assert err(warp(img, spl), mid) < 0.002


def test_the_linear_estimate_is_the_t_weighted_mean_of_the_one_sided_ones():
    # intermediate: all adds the two one-sided estimates; Super SloMo's linear one lies between
    # them, so a sign or side mix-up in one_sided_flows shows here.
    from animvfi_pipeline.models.vfi import one_sided_flows

    flow_01, flow_10 = exact_flows()
    t = torch.tensor([0.3])
    lin_t0, lin_t1 = intermediate_flows(flow_01, flow_10, t)
    one_t0, one_t1 = one_sided_flows(flow_01, flow_10, t)
    for lin, one in ((lin_t0, one_t0), (lin_t1, one_t1)):
        assert torch.allclose(lin, 0.7 * one[:, :2] + 0.3 * one[:, 2:], atol=1e-5)
    # Each one-sided estimate carries its frame's pixels along their own motion: frame 0's
    # square, warped along the frame-0-sided flow from t, lands where the square is at t.
    img0, mid = frame(0), frame(0.5)
    half = torch.tensor([0.5])
    assert err(warp(img0, one_sided_flows(flow_01, flow_10, half)[0][:, :2]), mid) < err(img0, mid)


@pytest.mark.parametrize("how", ["linear", "splat", "both", "all"])
def test_every_intermediate_estimate_interpolates_with_exact_flow(how):
    model = VFIModel(VFIConfig(**{**TINY, "intermediate": how}), flownet=GivenFlows(*exact_flows())).eval()
    img0, img1, mid = frame(0), frame(1), frame(0.5)
    blend_err = err(0.5 * (img0 + img1), mid)
    with torch.no_grad():
        full = model.inference(img0, img1, 0.5)
    assert err(full, mid) < 0.3 * blend_err
    if how != "linear":  # the splatted estimate has no double edge
        assert err(full, mid) < 0.1 * blend_err


def test_a_config_without_intermediate_keeps_the_linear_estimate_of_older_checkpoints():
    d = VFIConfig(**TINY).to_dict()
    del d["intermediate"]
    assert VFIConfig.from_dict(d).intermediate == "linear"
    with pytest.raises(ValueError, match="intermediate"):
        VFIConfig(intermediate="cubic")


def test_each_sample_is_interpolated_at_its_own_t():
    model = VFIModel(VFIConfig(**TINY), flownet=GivenFlows(*exact_flows())).eval()
    img0, img1 = frame(0).expand(2, -1, -1, -1), frame(1).expand(2, -1, -1, -1)
    pred = model.inference(img0, img1, torch.tensor([0.25, 0.75]))
    early, late = frame(0.25)[0], frame(0.75)[0]
    assert err(pred[0], early) < 0.3 * err(pred[0], late)
    assert err(pred[1], late) < 0.3 * err(pred[1], early)
    assert err(pred[0], early) < 0.3 * err(0.75 * img0[0] + 0.25 * img1[0], early)


@pytest.mark.parametrize("size", [(45, 70), (64, 96)])
def test_forward_and_inference_work_at_any_size(size):
    model = VFIModel(VFIConfig(**TINY))
    img0, img1 = torch.rand(2, 3, *size), torch.rand(2, 3, *size)
    out = model(img0, img1, 0.5)
    expected = {"pred": 3, "flow_01": 2, "flow_10": 2, "flow_t0": 2, "flow_t1": 2, "mask": 1,
                "warped0": 3, "warped1": 3}
    for key, channels in expected.items():
        assert out[key].shape == (2, channels, *size), key
    assert len(out["gates"]) == 3
    assert all(0 < float(g.detach().min()) and float(g.detach().max()) < 1 for g in out["gates"])
    pred = model.inference(img0 * 4, img1 * 4 - 2, 0.3)  # out-of-range inputs still give a valid image
    assert pred.shape == (2, 3, *size) and not pred.requires_grad
    assert float(pred.min()) >= 0.0 and float(pred.max()) <= 1.0


@pytest.mark.parametrize("backbone", ["unet", "resunet", "transunet"])
def test_each_backbone_learns_to_interpolate(backbone):
    # Untrained (zero) flow and a flat square moving 8 px: only the synthesis net can close the gap.
    # MSE shows progress within a few steps; Charbonnier gets there too, more slowly on a batch
    # whose error is zero almost everywhere.
    cfg = VFIConfig(backbone=backbone, **TINY)
    flownet = FlowNet(cfg.flow)
    torch.manual_seed(0)  # the synthesis net's initialisation does not depend on the flow net's
    model = VFIModel(cfg, flownet)
    scene = {t: frame(t, move=8, textured=False)[..., :64, :64] for t in (0, 0.5, 1)}
    img0, img1 = torch.cat((scene[0], scene[1])), torch.cat((scene[1], scene[0]))
    target = scene[0.5].expand(2, -1, -1, -1)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    losses = []
    for _ in range(40):
        loss = F.mse_loss(model(img0, img1, 0.5)["pred"], target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.6 * losses[0]
    pred = model.inference(img0, img1, 0.5)
    assert float(F.mse_loss(pred, target)) < 0.6 * float(F.mse_loss(0.5 * (img0 + img1), target))


@pytest.mark.parametrize("freeze", [True, False])
def test_freeze_flow_decides_whether_the_flow_network_learns(freeze):
    model = VFIModel(VFIConfig(freeze_flow=freeze, **TINY))
    before = {k: v.clone() for k, v in model.flownet.state_dict().items()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    for _ in range(2):  # the flow's last layers start at zero; the second step reaches the rest
        loss = charbonnier(model(frame(0), frame(1), 0.5)["pred"], frame(0.5))
        opt.zero_grad()
        loss.backward()
        opt.step()
    changed = any(not torch.equal(before[k], v) for k, v in model.flownet.state_dict().items())
    assert changed is not freeze


def test_bad_t_is_refused():
    model = VFIModel(VFIConfig(**TINY))
    img = torch.rand(2, 3, 32, 32)
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        model(img, img, 1.0)
    with pytest.raises(ValueError, match="3 values for a batch of 2"):
        model(img, img, torch.tensor([0.2, 0.5, 0.7]))


def test_config_round_trips_through_json():
    cfg = VFIConfig(backbone="transunet", **TINY)
    as_json = json.loads(json.dumps(cfg.to_dict()))
    assert VFIConfig.from_dict(as_json) == cfg
    with pytest.raises(ValueError, match="unknown VFIConfig fields: depth"):
        VFIConfig.from_dict({**as_json, "depth": 3})
    with pytest.raises(ValueError, match="valid names: unet, resunet, transunet"):
        VFIModel(VFIConfig(backbone="swin"))
    with pytest.raises(ValueError, match="differs from VFIConfig.flow"):
        VFIModel(cfg, FlowNet(FlowNetConfig(depth=1)))


def test_one_pair_at_several_times_computes_the_flow_once_and_matches_separate_calls():
    torch.manual_seed(0)
    model = VFIModel(VFIConfig(flow=FlowNetConfig(channels=(8, 8, 8), depth=1), widths=(8, 8, 8, 8))).eval()
    calls = []
    model.flownet.register_forward_hook(lambda _, inputs, __: calls.append(inputs[0].shape[0]))  # pairs seen
    img0, img1 = frame(0.0), frame(1.0)
    times = [0.25, 0.5, 0.75]
    together = model.inference(img0, img1, torch.tensor(times))
    assert calls == [1] and together.shape == (3, *img0.shape[1:])
    for i, t in enumerate(times):
        assert torch.allclose(together[i], model.inference(img0, img1, t)[0], atol=1e-5)
    calls.clear()
    reduced = model.inference(img0, img1, torch.tensor(times), scale=0.5)
    assert calls == [1] and reduced.shape == together.shape
    assert torch.allclose(reduced[1], model.inference(img0, img1, 0.5, scale=0.5)[0], atol=1e-5)


@pytest.mark.parametrize("size", [(64, 96), (45, 70)])
def test_a_prior_from_the_data_loader_gives_the_same_frame_as_one_computed_in_the_model(size):
    torch.manual_seed(0)
    cfg = VFIConfig(flow=FlowNetConfig(channels=(8, 8, 8), depth=1, init="dis"), widths=(8, 8, 8, 8))
    model = VFIModel(cfg).eval()
    img0, img1 = (F.interpolate(frame(t), size=size, mode="area") for t in (0.0, 1.0))
    prior = model.flownet.prior(img0, img1)  # what TripletDataset(prior=...) hands over
    with torch.no_grad():
        assert torch.equal(model(img0, img1, 0.5, prior=prior)["pred"], model(img0, img1, 0.5)["pred"])


def test_a_prior_for_a_flow_net_without_one_is_refused():
    model = VFIModel(VFIConfig(flow=FlowNetConfig(channels=(8, 8, 8), depth=1), widths=(8, 8, 8, 8)))
    with pytest.raises(ValueError, match="init='zero'"):
        model(frame(0.0), frame(1.0), 0.5, prior=torch.zeros(1, 4, *frame(0.0).shape[-2:]))


def _scramble(model: nn.Module, seed: int, std: float = 0.05) -> nn.Module:
    """Every weight random, heads included: a badly trained model. At std 0.05 the ungated
    network moves static pixels by half a pixel on average and damages them by ~16/255."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return model


def test_the_prior_is_the_same_whatever_the_random_weights():
    from animvfi_pipeline.models.vfi import prior_network

    cfg = VFIConfig(**{**TINY, "flow": FlowNetConfig(channels=(8, 8, 8), depth=1, init="dis")})
    img0, img1 = frame(0.0), frame(1.0)
    outs = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        outs.append(prior_network(cfg).inference(img0, img1, 0.5))
    assert torch.equal(outs[0], outs[1])
    # ... and it is not a trained model: DIS flow, warps and the t-weighted mean, nothing more.
    assert err(outs[0], frame(0.5)) < err((img0 + img1) / 2, frame(0.5))


def _static_scene_pair(style: str, noise: float):
    """A generated cartoon frame (textured backgrounds included) and a copy with tiny noise."""
    from animvfi_pipeline.data.synthetic import make_scene

    rgb = make_scene(3, 160, 96, level=0, style=style).render(0.0)
    img = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
    g = torch.Generator().manual_seed(0)
    # Each pixel channel moves by one 8-bit level with probability `noise`: mean |diff| = noise / 255.
    flips = (torch.rand(img.shape, generator=g) < noise).float() * torch.where(torch.rand(img.shape, generator=g) < 0.5, -1.0, 1.0)
    return img, (img + flips / 255).clamp(0, 1)


@pytest.mark.parametrize("style,how,fusion,flips", [("paper", "linear", "mean", 1), ("watercolor", "linear", "mean", 1),
                                                    ("watercolor", "both", "mean", 1),
                                                    ("watercolor", "both", "select", 1),
                                                    ("watercolor", "all", "select", 4)])
def test_with_the_gates_a_static_pair_comes_out_unchanged_whatever_the_weights(style, how, fusion, flips, one_thread):
    # A pixel that does not move must come out as it went in, even from a model whose learned
    # parts would draw garbage everywhere else.
    flow = FlowNetConfig(channels=(8, 8, 8), depth=1, init="dis", residual_gate=0.02)
    gated = _scramble(VFIModel(VFIConfig(**{**TINY, "flow": flow, "correction_gate": 0.02, "intermediate": how,
                                            "fusion": fusion, "flip_ensemble": flips})), seed=1).eval()
    ungated = _scramble(VFIModel(VFIConfig(**{**TINY, "flow": FlowNetConfig(channels=(8, 8, 8), depth=1,
                                                                              init="dis")})), seed=1).eval()
    for noise in (0.0, 0.5):  # identical frames, then frames differing by 0.5/255 on average
        img0, img1 = _static_scene_pair(style, noise)
        with torch.no_grad():
            out = gated.inference(img0, img1, 0.5)
            bad = ungated.inference(img0, img1, 0.5)
        assert (out - img0).abs().mean() * 255 < 0.5, noise
        assert (bad - img0).abs().mean() * 255 > 2.0  # without the gates the same weights do damage


@pytest.mark.parametrize("how", ["linear", "both"])
def test_an_untrained_selector_is_the_fixed_mean_and_a_trained_one_is_loaded_back(how, tmp_path):
    from animvfi_pipeline.models.checkpoint import build_vfi_model, make_checkpoint

    mean_cfg = VFIConfig(**{**TINY, "flow": FlowNetConfig(channels=(8, 8, 8), depth=1, init="dis"), "intermediate": how})
    select_cfg = VFIConfig(**{**mean_cfg.to_dict(), "fusion": "select"})
    mean_model, select_model = VFIModel(mean_cfg).eval(), VFIModel(select_cfg).eval()
    select_model.load_state_dict({**select_model.state_dict(), **mean_model.state_dict()})
    img0, img1 = frame(0.0), frame(1.0)
    for scale in (1.0, 0.5):
        a = mean_model.inference(img0, img1, 0.5, scale=scale)
        b = select_model.inference(img0, img1, 0.5, scale=scale)
        assert (a - b).abs().max() < 1e-5, scale
    _scramble(select_model.selector, seed=2)
    ckpt = make_checkpoint("animvfi.vfi", select_model, select_cfg.to_dict())
    loaded = build_vfi_model(ckpt).eval()
    changed = select_model.inference(img0, img1, 0.5)
    assert torch.equal(loaded.inference(img0, img1, 0.5), changed)
    assert (changed - b).abs().max() > 1e-3  # the selector's weights do change the frame


def test_the_selector_learns_to_take_the_warp_that_is_right():
    # Frame 1's warp is replaced by garbage on the right half, in a way the cues show (the two
    # warps disagree there): trained, the selector must lean on frame 0's warp there.
    from animvfi_pipeline.models.fusion import WarpSelector, select_fusion

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    target = F.avg_pool2d(torch.rand(4, 3, H + 2, W + 2, generator=g), 3, 1)
    good, bad = target, target.clone()
    bad[..., W // 2:] = torch.rand(4, 3, H, W - W // 2, generator=g)
    t, mask = torch.full((4,), 0.5), torch.full((4, 1, H, W), 0.5)
    cues = torch.cat([t.view(-1, 1, 1, 1).expand(4, 1, H, W), torch.ones(4, 2, H, W),
                      (good - bad).abs().mean(1, keepdim=True), torch.zeros(4, 2, H, W)], 1)
    selector = WarpSelector(k=1, width=8)
    opt = torch.optim.Adam(selector.parameters(), lr=3e-3)
    with torch.no_grad():
        before = err(select_fusion(selector(cues), [good], [bad], mask, t), target)
    for _ in range(150):
        loss = charbonnier(select_fusion(selector(cues), [good], [bad], mask, t), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = err(select_fusion(selector(cues), [good], [bad], mask, t), target)
    assert after < 0.3 * before


def test_without_a_synthesis_net_the_model_is_its_prior_and_only_the_selector_learns():
    # backbone "none": nothing can paint a pixel. With the mean fusion the model is exactly the
    # prior of the same config with a synthesis net; with "select" the selector is all it learns,
    # and even scrambled it leaves a static textured pair as it is.
    from animvfi_pipeline.models.vfi import prior_network

    flow = FlowNetConfig(channels=(8, 8, 8), depth=1, init="dis")
    bare = VFIModel(VFIConfig(**{**TINY, "flow": flow, "backbone": "none", "intermediate": "both"})).eval()
    prior = prior_network(VFIConfig(**{**TINY, "flow": flow, "intermediate": "both"}))
    prior.flownet.load_state_dict(bare.flownet.state_dict())
    img0, img1 = frame(0.0), frame(1.0)
    for scale in (1.0, 0.5):
        assert (bare.inference(img0, img1, 0.5, scale=scale) - prior.inference(img0, img1, 0.5, scale=scale)).abs().max() < 1e-5

    select = VFIModel(VFIConfig(**{**TINY, "flow": flow, "backbone": "none", "intermediate": "both",
                                   "fusion": "select", "freeze_flow": True}))
    learned = [name for name, p in select.named_parameters() if p.requires_grad]
    assert learned and all(name.startswith("selector.") for name in learned)
    _scramble(select.selector, seed=3).eval()
    static0, static1 = _static_scene_pair("watercolor", 0.5)
    with torch.no_grad():
        out = select.inference(static0, static1, 0.5)
        far0, far1 = frame(0.0, move=16), frame(1.0, move=16)  # where the warps disagree
        moving = select.inference(far0, far1, 0.5)
        assert (out - static0).abs().mean() * 255 < 0.5
        assert (moving - prior.inference(far0, far1, 0.5)).abs().max() > 1e-3  # the selector does act


def test_mirrored_passes_average_the_model_on_the_mirrored_pair_and_travel_with_the_checkpoint(one_thread):
    from animvfi_pipeline.models.checkpoint import build_vfi_model, make_checkpoint
    from animvfi_pipeline.models.vfi import prior_network

    cfg = VFIConfig(**{**TINY, "flow": FlowNetConfig(channels=(8, 8, 8), depth=1, init="dis"), "intermediate": "all",
                       "fusion": "select", "flip_ensemble": 4, "backbone": "none"})
    model = _scramble(VFIModel(cfg), seed=3).eval()
    loaded = build_vfi_model(make_checkpoint("animvfi.vfi", model, cfg.to_dict())).eval()
    img0, img1 = frame(0.0, move=8), frame(1.0, move=8)
    by_hand = torch.zeros_like(img0)
    for dims in ((), (3,), (2,), (2, 3)):
        m = (lambda x, d=dims: x.flip(d)) if dims else (lambda x: x)
        by_hand += m(model.inference(m(img0), m(img1), 0.5, flips=1)) / 4
    four = loaded.inference(img0, img1, 0.5)  # the checkpoint's own setting
    assert (four - by_hand).abs().max() < 1e-5
    assert (four - model.inference(img0, img1, 0.5, flips=1)).abs().max() > 1e-3  # DIS differs when mirrored
    # the prior of the same config runs the same passes, so model - prior compares like with like
    assert prior_network(cfg).cfg.flip_ensemble == 4
    with pytest.raises(ValueError, match="flip_ensemble"):
        VFIConfig(flip_ensemble=3)
    with pytest.raises(ValueError, match="flips"):
        model.inference(img0, img1, 0.5, flips=8)


def test_flow_candidates_give_the_model_the_prior_that_explains_the_colours_and_travel_with_the_checkpoint(one_thread):
    from animvfi_pipeline.data.flow import best_dis_flow_pair
    from animvfi_pipeline.models.checkpoint import build_vfi_model, make_checkpoint
    from animvfi_pipeline.models.vfi import prior_network

    # A red disc on green of the same 8-bit luminance, moved 6 pixels: grey DIS does not see it.
    ys, xs = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    pair = []
    for cx in (40, 46):
        img = torch.tensor([60, 160, 60]).view(3, 1, 1).expand(3, H, W).clone().float()
        img[:, (xs - cx) ** 2 + (ys - 32) ** 2 < 14 ** 2] = torch.tensor([200.0, 80, 104]).view(3, 1)
        pair.append(img[None] / 255)
    cands = ["fine", "fine-pca"]
    base = {**TINY, "flow": FlowNetConfig(channels=(8, 8, 8), depth=1, init="dis", dis_preset="fine"),
            "intermediate": "linear", "backbone": "none"}
    plain, chosen = (prior_network(VFIConfig(**base, flow_candidates=c)) for c in ([], cands))
    as_u8 = [(x[0].permute(1, 2, 0) * 255).round().byte().numpy() for x in pair]
    expected = torch.from_numpy(best_dis_flow_pair(as_u8[0], as_u8[1], tuple(cands)))[None]
    assert torch.allclose(chosen.flow_prior(*pair), expected)
    middle = torch.tensor([60, 160, 60]).view(3, 1, 1).expand(3, H, W).clone().float()
    middle[:, (xs - 43) ** 2 + (ys - 32) ** 2 < 14 ** 2] = torch.tensor([200.0, 80, 104]).view(3, 1)
    middle = middle[None] / 255
    assert err(chosen.inference(*pair), middle) < 0.5 * err(plain.inference(*pair), middle)
    loaded = build_vfi_model(make_checkpoint("animvfi.vfi", chosen, chosen.cfg.to_dict()))
    assert loaded.cfg.flow_candidates == cands
    assert VFIConfig.from_dict({k: v for k, v in VFIConfig().to_dict().items() if k != "flow_candidates"}).flow_candidates == []
    with pytest.raises(ValueError, match="flow_candidates"):
        VFIConfig(flow_candidates=["finest"])


def test_bicubic_warps_keep_the_fine_texture_that_bilinear_ones_blur_and_travel_with_the_checkpoint():
    from animvfi_pipeline.models.checkpoint import build_vfi_model, make_checkpoint

    # Stripes of period 4 px move 1 px between the frames, so the middle frame is half a pixel
    # from each: bilinear sampling there averages neighbours and loses ~30 % of the contrast.
    xs = torch.arange(W, dtype=torch.float32)

    def stripes(shift: float) -> torch.Tensor:
        return (0.5 + 0.3 * torch.sin(2 * torch.pi * (xs - shift) / 4)).view(1, 1, 1, W).expand(1, 3, H, W).clone()

    img0, middle, img1 = stripes(0.0), stripes(0.5), stripes(1.0)
    flow_01, flow_10 = torch.zeros(1, 2, H, W), torch.zeros(1, 2, H, W)
    flow_01[:, 0], flow_10[:, 0] = 1.0, -1.0  # warp(img1, flow_01) == img0
    errors = {}
    for mode in ("bilinear", "bicubic"):
        cfg = VFIConfig(**{**TINY, "backbone": "none", "warp_mode": mode})
        model = VFIModel(cfg, flownet=None).eval()
        model.flownet = GivenFlows(flow_01, flow_10)
        inner = (slice(None), slice(None), slice(4, -4), slice(4, -4))  # away from the border padding
        errors[mode] = err(model.inference(img0, img1, 0.5)[inner], middle[inner])
        # A pixel that does not move is the input, whatever the kernel.
        model.flownet = GivenFlows(torch.zeros(1, 2, H, W), torch.zeros(1, 2, H, W))
        assert torch.allclose(model.inference(img0, img0, 0.5), img0, atol=1e-6)
    assert errors["bicubic"] < 0.3 * errors["bilinear"], errors
    cfg = VFIConfig(**{**TINY, "backbone": "none", "warp_mode": "bicubic"})
    loaded = build_vfi_model(make_checkpoint("animvfi.vfi", VFIModel(cfg), cfg.to_dict()))
    assert loaded.cfg.warp_mode == "bicubic"
    assert VFIConfig.from_dict({k: v for k, v in VFIConfig().to_dict().items() if k != "warp_mode"}).warp_mode == "bilinear"
    with pytest.raises(ValueError, match="warp_mode"):
        VFIConfig(warp_mode="lanczos")
