"""Test-time adaptation: what the clip teaches (triplets of its own drawings, never across a cut)
and the held-out check that keeps the original model when adapting made it worse."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from animvfi_pipeline.data.synthetic_video import Shot, make_clip, write_clip
from animvfi_pipeline.inference.adapt import AdaptConfig, adapt_on_triplets, clip_triplets, split_held_out
from animvfi_pipeline.inference.video_io import probe
from animvfi_pipeline.models.flownet import FlowNetConfig
from animvfi_pipeline.models.vfi import VFIConfig, VFIModel

pytestmark = pytest.mark.usefixtures("one_thread")
W, H = 96, 64


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    # Two shots, the second on twos: a cut and held drawings for the analysis to find.
    clip = make_clip([Shot(seed=3, drawings=6), Shot(seed=4, drawings=5, hold=2)], W, H, frames_per_window=4)
    return clip, write_clip(clip, tmp_path_factory.mktemp("clip") / "frames")


def small_model() -> VFIModel:
    torch.manual_seed(0)
    cfg = VFIConfig(flow=FlowNetConfig(scales=(4, 2), channels=(8, 8), depth=1), widths=(8, 8), head_channels=4)
    return VFIModel(cfg).eval()


def test_triplets_are_three_consecutive_drawings_of_one_shot(clip):
    clip, folder = clip
    drawing_of = {clip.frame(i).tobytes(): clip.drawing_of[i] for i in range(clip.n_frames)}
    triplets = clip_triplets(probe(folder), AdaptConfig(steps=1))
    keys = [[drawing_of[f.tobytes()] for f in t] for t in triplets]
    # Shot 0 has drawings 0..5 (4 triplets), shot 1 drawings 0..4 (3 triplets), each held drawing once.
    assert keys == [[(s, d), (s, d + 1), (s, d + 2)] for s, n in ((0, 6), (1, 5)) for d in range(n - 2)]


def test_memory_is_bounded_by_max_triplets_spread_over_the_clip(clip):
    clip, folder = clip
    triplets = clip_triplets(probe(folder), AdaptConfig(steps=1, max_triplets=3))
    assert len(triplets) == 3
    assert np.array_equal(triplets[0][0], clip.frame(0))  # the first and the last are kept
    assert np.array_equal(triplets[-1][2], clip.frame(clip.n_frames - 1))


def test_held_out_targets_are_never_trained_on(clip):
    clip, folder = clip
    train, held = split_held_out(clip_triplets(probe(folder), AdaptConfig(steps=1)), n_held_out=8)
    assert len(held) == 1  # at most a quarter of the 7 triplets
    assert not any(np.array_equal(f, held[0][1]) for t in train for f in t)


def test_adapted_weights_that_are_worse_on_held_out_drawings_are_refused(clip):
    clip, folder = clip
    model = small_model()
    original = {k: v.clone() for k, v in model.state_dict().items()}
    train, held = split_held_out(clip_triplets(probe(folder), AdaptConfig(steps=1)), n_held_out=8)
    # A learning rate that wrecks the network: the held-out check must see it and keep the original.
    result = adapt_on_triplets(model, train, held, AdaptConfig(seconds=None, steps=3, lr=10.0, crop=48))
    assert result.steps >= 1  # it did train (until the copy diverged)
    assert not result.used_adapted and result.model is model
    assert not result.held_out_after > result.held_out_before
    assert "using the original model" in result.summary()
    assert all(torch.equal(v, original[k]) for k, v in model.state_dict().items())  # never touched


def test_adapted_weights_that_do_better_are_used(clip):
    clip, folder = clip
    model = small_model()
    train, held = split_held_out(clip_triplets(probe(folder), AdaptConfig(steps=1)), n_held_out=8)
    result = adapt_on_triplets(model, train, held, AdaptConfig(seconds=None, steps=30, lr=1e-3, crop=48))
    assert result.held_out_after > result.held_out_before  # the untrained synthesis net has a lot to learn
    assert result.used_adapted and result.model is not model
    assert "using the adapted model" in result.summary()


def test_the_synthesis_group_adapts_the_warp_selector_too_and_refuses_a_model_without_one():
    from animvfi_pipeline.inference.adapt import trainable_parameters

    flow = FlowNetConfig(channels=(8, 8, 8), depth=1, init="dis")
    select = VFIModel(VFIConfig(flow=flow, widths=(8, 8, 8, 8), backbone="none", fusion="select", intermediate="both"))
    names = {id(p): n for n, p in select.named_parameters()}
    learned = [names[id(p)] for p in trainable_parameters(select, "synthesis")]
    assert learned and all(n.startswith("selector.") for n in learned)
    bare = VFIModel(VFIConfig(flow=flow, backbone="none"))
    with pytest.raises(ValueError, match="--parameters synthesis"):
        trainable_parameters(bare, "synthesis")


def test_whole_frame_priors_follow_every_crop_flip_and_reversal():
    # With the flow frozen (--parameters synthesis) the DIS prior is computed once per triplet and
    # cropped with the frames; a prior that does not follow a mirror or a reversal would teach the
    # selector on wrong motion. A texture moving 6 px right: warping the (augmented) end frame back
    # along the (augmented) prior must give the other end frame, for every sample.
    from animvfi_pipeline.inference.adapt import random_batch
    from animvfi_pipeline.models.warp import warp

    rng = np.random.default_rng(0)
    texture = (rng.random((40, 60, 3)) * 255).astype(np.uint8)
    texture = np.repeat(np.repeat(texture, 2, 0), 2, 1)  # smooth enough for bilinear warps
    first, middle, last = texture[:, 6:106], texture[:, 3:103], texture[:, 0:100]  # moving right
    prior = np.zeros((4, 80, 100), np.float16)
    prior[0], prior[2] = 6, -6  # first -> last: +6 px in x; last -> first: -6
    flips = set()
    for seed in range(4):
        img0, _, img1, p = random_batch([(first, middle, last)], 8, 48, np.random.default_rng(seed),
                                        torch.device("cpu"), [prior])
        assert p.shape == (8, 4, 48, 48)
        back0, back1 = warp(img1, p[:, :2]), warp(img0, p[:, 2:])
        inner = (slice(None), slice(None), slice(8, -8), slice(8, -8))  # away from the crop's edge
        assert float((back0 - img0)[inner].abs().max()) < 1e-4
        assert float((back1 - img1)[inner].abs().max()) < 1e-4
        flips |= {float(v) for v in p[:, 0, 0, 0]}
    assert flips == {6.0, -6.0}  # both directions were drawn
