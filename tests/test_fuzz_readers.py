"""Property-based fuzzing of every reader of user files (hypothesis): random bytes, and valid
files with flipped bytes or cut short. The only acceptable outcomes are a normal result or the
project's own error (DataError / CheckpointError) whose message starts with the file's path --
never another exception, a crash or a hang."""
from __future__ import annotations

import io
import json
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from animvfi_pipeline.data.atd12k import read_annotation, read_flow, read_image
from animvfi_pipeline.errors import CheckpointError, DataError
from animvfi_pipeline.inference.video_io import probe, read_frames
from animvfi_pipeline.models.checkpoint import load_checkpoint, make_checkpoint, save_checkpoint
from animvfi_pipeline.models.flownet import FlowNet, FlowNetConfig

FUZZ = settings(max_examples=30, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _image(ext: str) -> bytes:
    img = np.zeros((24, 32, 3), np.uint8)
    cv2.circle(img, (12, 12), 8, (40, 200, 90), -1)
    return cv2.imencode(ext, img)[1].tobytes()


def _npy() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.random.default_rng(0).normal(size=(2, 12, 16)).astype(np.float32))
    return buffer.getvalue()


def _video() -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for i in range(6):
            frame = np.full((32, 32, 3), 30 * i, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buffer.getvalue()


def _checkpoint(tmp: Path) -> bytes:
    torch.manual_seed(0)
    config = FlowNetConfig(scales=(4,), channels=(8,), depth=1, init="zero")
    path = tmp / "seed.pt"
    save_checkpoint(path, make_checkpoint("animvfi.flownet", FlowNet(config), config.to_dict()))
    return path.read_bytes()


@st.composite
def damaged(draw, valid: bytes) -> bytes:
    """``valid`` with a few bytes changed, cut short, or both; sometimes plain random bytes."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=2048))
    data = bytearray(valid)
    for _ in range(draw(st.integers(0, 4))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


def assert_own_error(exc: Exception, path: Path) -> None:
    assert isinstance(exc, (DataError, CheckpointError)), f"{type(exc).__name__}: {exc}"
    assert str(exc).startswith(str(path)), str(exc)


def outcome(read, path: Path):
    try:
        return read(path)
    except Exception as exc:  # noqa: BLE001 -- which exception it is, is the point of the test
        assert_own_error(exc, path)
        return None


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_frames(tmp_path, ext):
    @FUZZ
    @given(data=damaged(_image(ext)))
    def check(data):
        path = tmp_path / f"frame1{ext}"
        path.write_bytes(data)
        img = outcome(read_image, path)
        assert img is None or (img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3)

    check()


def test_npy_flows(tmp_path):
    @FUZZ
    @given(data=damaged(_npy()))
    def check(data):
        path = tmp_path / "guide_flo13.npy"
        path.write_bytes(data)
        flow = outcome(lambda p: read_flow(p, (12, 16)), path)
        assert flow is None or (flow.shape[0] == 2 and np.isfinite(flow).all())

    check()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 5000) | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
VALID_ANNOTATION = {"motion_RoI": {"x": 10, "y": 20, "width": 100, "height": 50}, "level": 1,
                    "image_size": [960, 540], "general_motion_type": "translation", "behavior": "walking"}


@st.composite
def annotations(draw) -> bytes:
    kind = draw(st.integers(0, 2))
    if kind == 0:  # the real structure with one field replaced by anything
        doc = json.loads(json.dumps(VALID_ANNOTATION))
        key = draw(st.sampled_from(sorted(doc)))
        if key == "motion_RoI" and draw(st.booleans()):
            doc[key][draw(st.sampled_from(["x", "y", "width", "height"]))] = draw(json_values)
        else:
            doc[key] = draw(json_values)
        return json.dumps(doc).encode()
    if kind == 1:
        return json.dumps(draw(json_values)).encode()
    return draw(damaged(json.dumps(VALID_ANNOTATION).encode()))


def test_annotation_json(tmp_path):
    @FUZZ
    @given(data=annotations())
    def check(data):
        path = tmp_path / "Disney_v4_0_000024_s2.json"
        path.write_bytes(data)
        ann = outcome(read_annotation, path)
        assert ann is None or ann["level"] in (0, 1, 2)

    check()


def test_video_files(tmp_path):
    @FUZZ
    @given(data=damaged(_video()))
    def check(data):
        path = tmp_path / "clip.mp4"
        path.write_bytes(data)
        info = outcome(lambda p: probe(p, Fraction(24)), path)
        if info is not None:
            frames = outcome(lambda p: list(read_frames(info)), path)
            assert frames is None or all(f.shape == (info.height, info.width, 3) for f in frames)

    check()


def test_checkpoints(tmp_path):
    valid = _checkpoint(tmp_path)
    reference = torch.load(io.BytesIO(valid), weights_only=True)["model"]

    @FUZZ
    @given(data=damaged(valid))
    def check(data):
        path = tmp_path / "flownet.pt"
        path.write_bytes(data)
        ckpt = outcome(lambda p: load_checkpoint(p, "animvfi.flownet"), path)
        if ckpt is not None:  # only an undamaged copy may load, with exactly the saved weights
            assert all(torch.equal(ckpt["model"][k], v) for k, v in reference.items())

    check()
