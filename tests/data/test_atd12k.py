"""ATD-12K reader: finds every triplet, loads it at the stored size, and names the bad file."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from fixtures_atd12k import (
    annotation_path,
    frame_path,
    gt_flow_path,
    make_atd12k_tree,
    rewrite_frame,
    truncate,
)

from animvfi_pipeline.data.atd12k import clip_key, load_triplet, scan_atd12k
from animvfi_pipeline.errors import DataError


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "atd"
    specs = make_atd12k_tree(root, n_train_clips=2, n_test=2, sgm_flow=True, extra_times=(0.25, 0.75))
    return root, specs


def _record(root, name):
    return next(r for r in scan_atd12k(root) if r.name == name)


def test_clip_key_drops_frame_and_sample_fields():
    assert clip_key("Japan_v2_2_062266_s2") == "Japan_v2_2"
    assert clip_key("Disney_v4_0_000024_s2") == "Disney_v4_0"


def test_style_of_reads_the_synthetic_family_and_leaves_real_names_without_one():
    from animvfi_pipeline.data.atd12k import style_of

    assert style_of("Japan_watercolor3_1_000004_s1") == "watercolor"
    assert style_of("Disney_v4_0_000024_s2") == ""  # real ATD-12K
    assert style_of("oddname") == ""


def test_scan_lists_every_triplet_with_its_files(tree):
    root, specs = tree
    records = scan_atd12k(root)
    assert [(r.name, r.split) for r in records] == [(s.name, s.split) for s in specs]
    train = [r for r in records if r.split == "train"]
    test = [r for r in records if r.split == "test"]
    assert all(p.suffix == ".jpg" and p.is_file() for r in train for p in r.frame_paths)
    assert all(p.suffix == ".png" for r in test for p in r.frame_paths)
    assert all(r.annotation_path is None and r.sgm_flow_paths is None for r in train)
    assert all(r.annotation_path.is_file() and all(p.is_file() for p in r.sgm_flow_paths) for r in test)
    assert all(all(p.is_file() for p in r.gt_flow_paths) for r in records)
    assert all(list(r.extra_frame_paths) == [0.25, 0.75] for r in records)
    assert scan_atd12k(root, splits=("test",)) == test


def test_load_resizes_frames_and_rescales_flow_per_axis(tree):
    root, specs = tree
    spec = specs[-1]  # a test triplet: lossless PNG frames
    record = _record(root, spec.name)
    full = load_triplet(record)
    assert full.frames.shape == (3, 32, 48, 3) and full.frames.dtype == np.uint8
    on_disk = cv2.cvtColor(cv2.imread(str(frame_path(root, spec, 2))), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(full.frames[1], on_disk)

    # Anisotropic: width x0.5, height x2. The flow must follow each axis' own factor.
    t = load_triplet(record, size=(24, 64), flow_source="gt")
    assert t.frames.shape == (3, 64, 24, 3)
    assert t.flows.shape == (2, 2, 64, 24) and t.flows.dtype == np.float32
    dx, dy = spec.shift
    np.testing.assert_allclose(t.flows[0, 0], dx * 0.5, atol=1e-4)
    np.testing.assert_allclose(t.flows[0, 1], dy * 2.0, atol=1e-4)
    np.testing.assert_allclose(t.flows[1], -t.flows[0], atol=1e-4)
    assert t.flow_source == "gt" and t.meta["flow_source"] == "gt"
    assert t.extra_frames.shape == (2, 64, 24, 3) and t.extra_times == (0.25, 0.75)


def test_test_split_metadata_comes_from_the_annotation_with_roi_in_stored_pixels(tree):
    root, specs = tree
    spec = specs[-1]
    ann = json.loads(annotation_path(root, spec).read_text())
    t = load_triplet(_record(root, spec.name), size=(24, 64))
    roi = ann["motion_RoI"]
    assert t.meta["roi"] == (roi["x"] // 2, roi["y"] * 2, roi["width"] // 2, roi["height"] * 2)
    assert t.meta["level"] == ann["level"]
    assert t.meta["motion_type"] == ann["general_motion_type"]
    assert t.meta["behavior"] == ann["behavior"]
    assert (t.meta["orig_width"], t.meta["orig_height"]) == (48, 32)
    assert t.meta["clip"] == clip_key(spec.name)


def test_train_split_has_unknown_annotation(tree):
    root, specs = tree
    t = load_triplet(_record(root, specs[0].name))
    assert t.meta["level"] == -1 and t.meta["motion_type"] == "unknown" and t.meta["roi"] == (-1, -1, -1, -1)


def test_flow_source_auto_prefers_gt_then_sgm_then_dis(tree):
    root, specs = tree
    test_spec = specs[-1]
    assert load_triplet(_record(root, test_spec.name)).flow_source == "gt"
    for which in ("flo13", "flo31"):
        gt_flow_path(root, test_spec, which).unlink()
    gt_flow_path(root, test_spec).parent.rmdir()
    assert load_triplet(_record(root, test_spec.name)).flow_source == "sgm"

    train_spec = specs[0]
    for which in ("flo13", "flo31"):
        gt_flow_path(root, train_spec, which).unlink()
    gt_flow_path(root, train_spec).parent.rmdir()
    t = load_triplet(_record(root, train_spec.name), size=(40, 24))
    assert t.flow_source == "dis" and t.flows.shape == (2, 2, 24, 40) and np.isfinite(t.flows).all()
    with pytest.raises(DataError, match="gt_flows"):
        load_triplet(_record(root, train_spec.name), flow_source="gt")
    assert load_triplet(_record(root, train_spec.name), flow_source="none").flows is None


# --------------------------------------------------------------------------- whole-dataset errors


def test_missing_root(tmp_path):
    with pytest.raises(DataError, match="root folder does not exist") as err:
        scan_atd12k(tmp_path / "nowhere")
    assert str(err.value).startswith(str(tmp_path / "nowhere"))


def test_missing_split_folder(tmp_path):
    make_atd12k_tree(tmp_path, n_train_clips=1, n_test=0)
    with pytest.raises(DataError, match="split folder") as err:
        scan_atd12k(tmp_path)
    assert str(err.value).startswith(str(tmp_path / "test_2k_540p"))


def test_empty_dataset(tmp_path):
    (tmp_path / "train_10k").mkdir()
    (tmp_path / "test_2k_540p").mkdir()
    with pytest.raises(DataError, match="no triplets"):
        scan_atd12k(tmp_path)


# --------------------------------------------------------------------------- one bad triplet


def _expect_error(record, path, match, **kwargs):
    with pytest.raises(DataError, match=match) as err:
        load_triplet(record, **kwargs)
    assert err.value.path == str(path), err.value


def test_missing_frame_names_the_frame(tree):
    root, specs = tree
    path = frame_path(root, specs[0], 2)
    path.unlink()
    _expect_error(_record(root, specs[0].name), path, "missing")


@pytest.mark.parametrize("which", [0, -1], ids=["jpeg", "png"])
def test_truncated_image_names_the_file(tree, which):
    root, specs = tree
    path = frame_path(root, specs[which], 3)
    truncate(path)
    _expect_error(_record(root, specs[which].name), path, "truncated")


def test_garbage_image_names_the_file(tree):
    root, specs = tree
    path = frame_path(root, specs[-1], 1)
    path.write_bytes(b"this is not a PNG")
    _expect_error(_record(root, specs[-1].name), path, "corrupt")


def test_frames_of_different_sizes(tree):
    root, specs = tree
    path = frame_path(root, specs[-1], 3)
    cv2.imwrite(str(path), np.zeros((30, 48, 3), np.uint8))
    _expect_error(_record(root, specs[-1].name), path, "48x30 but frame1.png is 48x32")


def _odd_images():
    gray = np.full((32, 48), 90, np.uint8)
    bgra = np.zeros((32, 48, 4), np.uint8)
    bgra[..., :3] = (10, 20, 30)
    bgra[:, :24, 3] = 255  # left half opaque, right half transparent
    deep = np.full((32, 48, 3), 200 * 257, np.uint16)
    return {
        "gray": (gray, lambda f: (f == 90).all()),
        "rgba": (bgra, lambda f: (f[:, :24] == (30, 20, 10)).all() and (f[:, 24:] == 255).all()),
        "16bit": (deep, lambda f: (f == 200).all()),
    }


@pytest.mark.parametrize("kind", ["gray", "rgba", "16bit"])
def test_image_mode_convert_and_refuse(tree, kind):
    root, specs = tree
    img, looks_right = _odd_images()[kind]
    path = rewrite_frame(frame_path(root, specs[0], 1), img)  # a train JPEG becomes a PNG
    record = _record(root, specs[0].name)
    t = load_triplet(record, image_mode="convert")
    assert t.frames.shape == (3, 32, 48, 3) and t.frames.dtype == np.uint8
    assert looks_right(t.frames[0])
    _expect_error(record, path, "image_mode='refuse'", image_mode="refuse")


def test_missing_annotation_in_test_split(tree):
    root, specs = tree
    path = annotation_path(root, specs[-1])
    path.unlink()
    _expect_error(_record(root, specs[-1].name), path, "annotation JSON is missing")


@pytest.mark.parametrize(
    "content, match",
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"level": 1, "image_size": [48, 32], "general_motion_type": "rotation"}), "motion_RoI"),
        (
            json.dumps(
                {"motion_RoI": {"x": 1, "y": 1, "width": 4, "height": 4}, "level": "hard",
                 "image_size": [48, 32], "general_motion_type": "rotation"}
            ),
            "level must be int",
        ),
        (
            json.dumps(
                {"motion_RoI": {"x": 1, "y": 1, "width": 4}, "level": 1,
                 "image_size": [48, 32], "general_motion_type": "rotation"}
            ),
            "lacks 'height'",
        ),
        (
            json.dumps(
                {"motion_RoI": {"x": 1, "y": 1, "width": 4, "height": 4}, "level": 1,
                 "image_size": "48x32", "general_motion_type": "rotation"}
            ),
            "image_size",
        ),
    ],
    ids=["bad-json", "missing-key", "wrong-type", "roi-key", "image-size"],
)
def test_malformed_annotation(tree, content, match):
    root, specs = tree
    path = annotation_path(root, specs[-1])
    path.write_text(content)
    _expect_error(_record(root, specs[-1].name), path, match)


@pytest.mark.parametrize(
    "array, match",
    [
        (np.zeros((32, 48, 2), np.float32), r"shape \(2, H, W\)"),
        (np.zeros((2, 32, 48), np.int16), "float"),
        (np.zeros((2, 10, 48), np.float32), "aspect ratio"),
        (np.full((2, 32, 48), np.nan, np.float32), "NaN"),
    ],
    ids=["channels-last", "int", "wrong-grid", "nan"],
)
def test_bad_flow_file(tree, array, match):
    root, specs = tree
    path = gt_flow_path(root, specs[0], "flo31")
    np.save(path, array)
    _expect_error(_record(root, specs[0].name), path, match, flow_source="gt")


def test_missing_extra_frame_when_requested(tree):
    root, specs = tree
    with pytest.raises(DataError, match="t=0.500"):
        load_triplet(_record(root, specs[0].name), extra_times=(0.5,))
