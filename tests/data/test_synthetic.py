"""The synthetic cartoon dataset: exact flow, difficulty levels, held cels, and the ATD-12K writer."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from animvfi_pipeline.data import synthetic
from animvfi_pipeline.data.synthetic import (
    MOTION_TYPES, SyntheticConfig, level_of, make_scene, write_synthetic_atd12k,
)
from animvfi_pipeline.errors import DataError
from animvfi_pipeline.models.warp import warp

EDGE_BAND = 2.0  # px; anti-aliased layer boundaries mix two layers, so no single flow is right there


def _warp_np(img: np.ndarray, flow: np.ndarray) -> np.ndarray:
    t = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255.0
    return warp(t, torch.from_numpy(flow)[None])[0].permute(1, 2, 0).numpy()


def _psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    return float(10.0 * np.log10(1.0 / np.mean((a - b)[mask] ** 2)))


# ------------------------------------------------------------------------------- exact flow

CASES = [(mt, lvl) for mt in MOTION_TYPES for lvl in (0, 1, 2)]


@pytest.mark.parametrize("motion_type,level", CASES)
def test_warping_with_the_flow_reproduces_the_other_frame(motion_type, level):
    seed = 9000 + CASES.index((motion_type, level))  # a different scene for every case
    scene = make_scene(seed, 320, 180, level=level, motion_type=motion_type)
    frames = {0.0: scene.render(0.0), 1.0: scene.render(1.0)}
    for t_a, t_b in ((0.0, 1.0), (1.0, 0.0)):
        flow = scene.flow(t_a, t_b)
        valid = ~scene.occlusion_mask(t_a, t_b, edge_band=EDGE_BAND)
        moving = np.isin(scene.layer_ids(t_a), scene.moving_layers(t_a, t_b)) & valid
        assert valid.mean() > 0.5 and moving.sum() > 200  # the check covers most of the frame, moving parts included
        warped = _warp_np(frames[t_b], flow)
        assert _psnr(warped, frames[t_a] / 255.0, valid) >= 40.0, (t_a, t_b)


def test_the_exactness_check_notices_a_half_pixel_error():
    scene = make_scene(9100, 320, 180, level=1, motion_type="translation")
    f0, f1 = scene.render(0.0), scene.render(1.0)
    valid = ~scene.occlusion_mask(0.0, 1.0, edge_band=EDGE_BAND)
    flow = scene.flow(0.0, 1.0)
    assert _psnr(_warp_np(f1, flow), f0 / 255.0, valid) >= 40.0
    flow[0] += 0.5
    assert _psnr(_warp_np(f1, flow), f0 / 255.0, valid) < 40.0


def test_flow_shape_dtype_and_zero_flow_at_equal_times():
    scene = make_scene(3, 96, 64)
    flow = scene.flow(0.0, 1.0)
    assert flow.shape == (2, 64, 96) and flow.dtype == np.float32
    assert np.all(scene.flow(0.4, 0.4) == 0)
    assert scene.render(0.5).shape == (64, 96, 3) and scene.render(0.5).dtype == np.uint8


def test_linear_timing_puts_the_middle_frame_at_the_midpoint_of_the_motion():
    # The default: what frame2 shows can be told from frame1 and frame3, so a model is taught
    # to interpolate, not to hedge between possible timings.
    # Every layer's transform (position, angle, scale, bend) and the camera move at constant speed.
    for seed in range(3):
        scene = make_scene(seed, 96, 64, level=2, n_windows=2)
        for tau in (0.25, 0.5, 1.5):
            k = int(tau)
            u = tau - k
            cams = [scene.camera.at(x) for x in (k, tau, k + 1)]
            assert np.allclose(cams[1], (1 - u) * cams[0] + u * cams[2], atol=1e-9)
            for layer in scene.layers:
                p0, p, p1 = (layer.params(x, c) for x, c in zip((k, tau, k + 1), cams))
                assert np.allclose(p, (1 - u) * p0 + u * p1, atol=1e-9), (seed, tau, layer.name)


def test_eased_timing_is_not_linear_in_time():
    # timing="eased": each layer keeps its own easing per window, as animators key it.
    for seed in range(3):
        scene = make_scene(seed, 96, 64, level=2, motion_type="translation", timing="eased")
        moving = np.isin(scene.layer_ids(0.0), scene.moving_layers())
        gap = np.abs(scene.flow(0.0, 0.25) - 0.25 * scene.flow(0.0, 1.0))[:, moving]
        assert gap.max() > 0.5, seed


def test_style_families_paint_the_same_shot_differently():
    frames = {s: make_scene(5, 96, 64, level=1, style=s).render(0.0) for s in ("cel", "paper", "cg", "watercolor")}
    ids = {s: make_scene(5, 96, 64, level=1, style=s).layer_ids(0.0) for s in ("cel", "watercolor")}
    # Same layout (the same layer on top nearly everywhere; soft edges move coverage a little)...
    assert (ids["cel"] == ids["watercolor"]).mean() > 0.9
    # ...painted differently: each family differs from every other on many pixels.
    names = list(frames)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            differs = np.abs(frames[a].astype(int) - frames[b].astype(int)).max(axis=2) > 8
            assert differs.mean() > 0.1, (a, b)
    with pytest.raises(ValueError, match="style"):
        make_scene(5, 96, 64, style="oil")


def test_occlusion_mask_marks_matches_outside_the_frame_and_behind_other_layers():
    scene = make_scene(11, 96, 64, level=2, motion_type="translation")
    flow, occ = scene.flow(0.0, 1.0), scene.occlusion_mask(0.0, 1.0)
    h, w = occ.shape
    gy, gx = np.mgrid[0:h, 0:w]
    mx, my = gx + flow[0], gy + flow[1]
    outside = (mx < 0) | (mx > w - 1) | (my < 0) | (my > h - 1)
    assert np.all(occ[outside])
    # Background that the moving content covers at t=1 is occluded (a hard level always has some).
    ids0 = scene.layer_ids(0.0)
    background = np.isin(ids0, [i for i, layer in enumerate(scene.layers) if layer.background])
    assert (occ & background & ~outside).any()
    assert occ.dtype == bool and occ.shape == (64, 96)


# -------------------------------------------------------------------- motion content and levels

@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_held_layers_have_exactly_zero_flow_and_do_not_change(seed):
    scene = make_scene(seed, 96, 64, level=2)
    held = [i for i, layer in enumerate(scene.layers) if layer.held]
    assert held, "every scene holds at least one cel"
    on_held = np.isin(scene.layer_ids(0.0), held)
    assert on_held.any()
    assert np.all(scene.flow(0.0, 1.0)[:, on_held] == 0.0)
    # 3 px: the anti-aliasing of a moving neighbour reaches that far and may shift a pixel by one level.
    clear = on_held & ~scene.occlusion_mask(0.0, 1.0, edge_band=3.0)
    assert clear.any() and np.array_equal(scene.render(0.0)[clear], scene.render(1.0)[clear])


@pytest.mark.parametrize("motion_type", MOTION_TYPES)
def test_levels_are_what_the_pixels_show(motion_type):
    width = 96
    hard = make_scene(21, width, 64, level=2, motion_type=motion_type)
    assert hard.max_displacement(0.0, 1.0) >= 0.08 * width
    assert hard.measured_level() == 2
    easy = make_scene(22, width, 64, level=0, motion_type=motion_type)
    assert 0 < easy.max_displacement(0.0, 1.0) < 0.03 * width
    assert make_scene(23, width, 64, level=1, motion_type=motion_type).measured_level() == 1
    assert hard.motion_type == motion_type and hard.level == 2


def test_level_thresholds_are_fractions_of_the_width():
    assert [level_of(d, 200) for d in (0.0, 5.9, 6.0, 15.9, 16.0, 40.0)] == [0, 0, 1, 1, 2, 2]


def test_motion_roi_encloses_the_moving_content():
    scene = make_scene(5, 96, 64, level=1)
    x, y, w, h = scene.motion_roi()
    moving = np.isin(scene.layer_ids(0.0), scene.moving_layers()) | np.isin(scene.layer_ids(1.0), scene.moving_layers())
    inside = np.zeros_like(moving)
    inside[y:y + h, x:x + w] = True
    assert moving.any() and not (moving & ~inside).any()
    assert 0 < w * h < 96 * 64


def test_scenes_are_deterministic_and_seeds_differ():
    a, b = make_scene(42, 96, 64), make_scene(42, 96, 64)
    assert np.array_equal(a.render(0.3), b.render(0.3))
    assert np.array_equal(a.flow(0.0, 1.0), b.flow(0.0, 1.0))
    assert not np.array_equal(a.render(0.3), make_scene(43, 96, 64).render(0.3))


def test_windows_of_a_clip_continue_each_other():
    clip = make_scene(8, 96, 64, n_windows=3)
    assert np.array_equal(clip.window(0).render(1.0), clip.window(1).render(0.0))
    assert not np.array_equal(clip.window(1).render(0.0), clip.window(1).render(1.0))
    with pytest.raises(IndexError):
        clip.window(3)


def test_bad_scene_arguments_are_refused():
    with pytest.raises(ValueError, match="motion_type"):
        make_scene(0, 96, 64, motion_type="teleport")
    with pytest.raises(ValueError, match="level"):
        make_scene(0, 96, 64, level=3)


# --------------------------------------------------------------------------------- the writer

TINY = dict(seed=7, width=96, height=64, n_train=4, n_test=3, triplets_per_clip=2, extra_times=(0.25,))
NAME = re.compile(r"^(Japan|Disney)_[a-z]+\d+_\d+_\d{6}_s1$")  # the video id carries the style family


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic") / "atd12k"
    cfg = SyntheticConfig(**TINY, workers=1)
    return write_synthetic_atd12k(root, cfg, progress=False), cfg


def test_writer_produces_the_atd12k_layout(written):
    root, cfg = written
    for split_dir, n, ext in (("train_10k", 4, ".jpg"), ("test_2k_540p", 3, ".png")):
        names = sorted(p.name for p in (root / split_dir).iterdir())
        assert len(names) == n and all(NAME.match(name) for name in names)
        for name in names:
            for i in (1, 2, 3):
                img = cv2.imread(str(root / split_dir / name / f"frame{i}{ext}"))
                assert img.shape == (64, 96, 3)
            for f in ("flo13.npy", "flo31.npy"):
                flow = np.load(root / "gt_flows" / split_dir / name / f)
                assert flow.shape == (2, 64, 96) and flow.dtype == np.float32
            assert cv2.imread(str(root / "extra_frames" / split_dir / name / "t0.250.png")).shape == (64, 96, 3)
    test_names = sorted(p.name for p in (root / "test_2k_540p").iterdir())
    assert sorted(p.name for p in (root / "test_2k_annotations").iterdir()) == test_names
    for name in test_names:
        ann = json.loads((root / "test_2k_annotations" / name / f"{name}.json").read_text())
        assert ann["level"] in (0, 1, 2) and ann["image_size"] == [96, 64]
        assert ann["general_motion_type"] in MOTION_TYPES and isinstance(ann["behavior"], str)
        roi = ann["motion_RoI"]
        assert roi["x"] >= 0 and roi["y"] >= 0 and roi["width"] > 0 and roi["height"] > 0
        assert roi["x"] + roi["width"] <= 96 and roi["y"] + roi["height"] <= 64
    all_names = [p.name for d in ("train_10k", "test_2k_540p") for p in (root / d).iterdir()]
    assert {n.split("_")[0] for n in all_names} == {"Japan", "Disney"}  # east and west breakdowns
    spec = json.loads((root / "synthetic_spec.json").read_text())
    assert {k: spec[k] for k in TINY} == {k: list(v) if isinstance(v, tuple) else v for k, v in TINY.items()}
    assert not list(root.parent.glob("*.tmp-*"))


def test_written_flows_match_their_frames(written):
    root, _ = written
    flows = {p.parent: np.load(p) for p in (root / "gt_flows" / "test_2k_540p").rglob("flo13.npy")}
    folder, flo13 = max(flows.items(), key=lambda kv: np.abs(kv[1]).max())
    assert np.abs(flo13).max() > 3.0
    flo31 = np.load(folder / "flo31.npy")
    f1, f3 = (cv2.imread(str(root / "test_2k_540p" / folder.name / f"frame{i}.png"))[..., ::-1].copy() for i in (1, 3))
    # Files only, no scene: pixels whose flow1->3 and flow3->1 agree are the non-occluded ones.
    back = warp(torch.from_numpy(flo31)[None], torch.from_numpy(flo13)[None])[0].numpy()
    agree = np.hypot(*(flo13 + back)) < 0.1
    assert agree.mean() > 0.5

    def err(flow):
        return np.abs(_warp_np(f3, flow) - f1 / 255.0).mean(axis=-1)[agree].mean()

    # Right direction, sign and channel order: the usual ways of storing a flow wrong.
    wrong = [np.zeros_like(flo13), flo31, -flo13, flo13[::-1].copy()]
    assert 3 * err(flo13) < min(err(w) for w in wrong)


def test_triplets_of_a_clip_are_consecutive_windows(written):
    root, _ = written
    clips: dict[str, list[str]] = {}
    for p in sorted((root / "train_10k").iterdir()):
        clips.setdefault(p.name.rsplit("_", 2)[0], []).append(p.name)
    first, second = next(names for names in clips.values() if len(names) == 2)
    frame3 = (root / "train_10k" / first / "frame3.jpg").read_bytes()
    assert frame3 == (root / "train_10k" / second / "frame1.jpg").read_bytes()


def test_output_does_not_depend_on_the_number_of_workers(written, tmp_path):
    root, cfg = written
    again = write_synthetic_atd12k(tmp_path / "w2", SyntheticConfig(**TINY, workers=2), progress=False)
    one, two = _tree(root), _tree(again)
    one.pop("synthetic_spec.json"), two.pop("synthetic_spec.json")  # records `workers`
    assert one.keys() == two.keys() and one == two


def test_rerun_with_the_same_spec_rewrites_nothing(written):
    root, cfg = written
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    write_synthetic_atd12k(root, cfg, progress=False)
    write_synthetic_atd12k(root, SyntheticConfig(**TINY, workers=2), progress=False)
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == before


def test_a_different_spec_replaces_the_dataset(tmp_path):
    root = tmp_path / "atd12k"
    write_synthetic_atd12k(root, SyntheticConfig(**{**TINY, "n_test": 2}, workers=1), progress=False)
    write_synthetic_atd12k(root, SyntheticConfig(**{**TINY, "n_test": 1, "extra_times": ()}, workers=1), progress=False)
    assert len(list((root / "test_2k_540p").iterdir())) == 1
    assert not (root / "extra_frames").exists()
    assert json.loads((root / "synthetic_spec.json").read_text())["n_test"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["atd12k"]


def test_refuses_to_overwrite_a_folder_that_is_not_synthetic(tmp_path):
    root = tmp_path / "my_atd12k"
    (root / "train_10k").mkdir(parents=True)
    precious = root / "train_10k" / "notes.txt"
    precious.write_text("real data")
    with pytest.raises(DataError) as err:
        write_synthetic_atd12k(root, SyntheticConfig(**TINY, workers=1), progress=False)
    assert str(err.value).startswith(str(root)) and "synthetic_spec.json" in str(err.value)
    assert precious.read_text() == "real data"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my_atd12k"]


def test_a_failed_run_leaves_nothing_behind(tmp_path, monkeypatch):
    calls = []

    def render_then_fail(job):
        if calls:
            raise RuntimeError("disk full")
        calls.append(job)
        return real(job)

    real = synthetic._render_clip
    monkeypatch.setattr(synthetic, "_render_clip", render_then_fail)
    with pytest.raises(RuntimeError, match="disk full"):
        write_synthetic_atd12k(tmp_path / "atd12k", SyntheticConfig(**TINY, workers=1), progress=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("bad", [dict(width=4), dict(n_test=-1), dict(triplets_per_clip=0),
                                 dict(extra_times=(0.5, 1.0)), dict(jpeg_quality=0),
                                 dict(level_weights=(0, 0, 0)), dict(workers=0)])
def test_invalid_configs_are_refused(bad):
    with pytest.raises(ValueError, match="invalid SyntheticConfig"):
        SyntheticConfig(**bad)


def test_level_mix_follows_the_weights(tmp_path):
    # All-hard weights: every written test triplet is measured hard.
    root = write_synthetic_atd12k(tmp_path / "hard", SyntheticConfig(
        **{**TINY, "n_train": 0, "n_test": 4, "extra_times": ()}, level_weights=(0, 0, 1), workers=1),
        progress=False)
    levels = [json.loads(p.read_text())["level"] for p in (root / "test_2k_annotations").rglob("*.json")]
    assert levels == [2, 2, 2, 2]
    assert os.listdir(root / "train_10k") == []  # an empty split is still a folder of the layout


def test_unseen_style_families_reach_validation_and_test_but_never_training(tmp_path):
    from animvfi_pipeline.data.atd12k import scan_atd12k
    from animvfi_pipeline.data.h5store import IngestionConfig, TripletStore, write_triplets_h5

    cfg = SyntheticConfig(**{**TINY, "n_train": 8, "n_test": 8}, styles=("cel", "paper"),
                          unseen_styles=("watercolor",), n_unseen_val=4, unseen_test_share=0.5, workers=1)
    root = write_synthetic_atd12k(tmp_path / "atd12k", cfg, progress=False)
    store_path = tmp_path / "s.h5"
    write_triplets_h5(store_path, scan_atd12k(root), IngestionConfig(
        size=(96, 64), val_fraction=0.0, val_styles=("watercolor",), workers=0), progress=False)
    meta = TripletStore(store_path).meta
    styles = {s: set(meta.loc[meta["split"] == s, "style"]) for s in ("train", "val", "test")}
    assert styles["train"] == {"cel", "paper"}
    assert styles["val"] == {"watercolor"} and (meta["split"] == "val").sum() == 4
    assert styles["test"] == {"cel", "paper", "watercolor"}
    test = meta[meta["split"] == "test"]
    assert (test["style"] == "watercolor").sum() == 4  # half of the test clips
