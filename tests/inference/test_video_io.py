"""Reading videos and frame folders, writing them back, and never leaving half-written output."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from animvfi_pipeline.errors import DataError
from animvfi_pipeline.inference.video_io import (
    OutputError,
    VideoSettings,
    VideoWriter,
    atomic_output,
    check_output_location,
    natural_key,
    probe,
    read_frames,
)


def frame(i: int, h: int = 48, w: int = 64) -> np.ndarray:
    img = np.full((h, w, 3), (40, 90, 160), np.uint8)
    cv2.rectangle(img, (4 + 3 * i, 10), (20 + 3 * i, 30), (250, 220, 30), -1)
    return img


def write_video(path: Path, n: int, fps: Fraction = Fraction(24), h: int = 48, w: int = 64) -> Path:
    with VideoWriter(path, fps, w, h, VideoSettings(crf=10)) as writer:
        for i in range(n):
            writer.write(frame(i, h, w))
    return path


def test_natural_sort_puts_frame_2_before_frame_10():
    names = ["f10.png", "f2.png", "f1.png", "F3.png"]
    assert sorted(names, key=natural_key) == ["f1.png", "f2.png", "F3.png", "f10.png"]


def test_folder_of_frames_is_read_in_natural_order(tmp_path):
    for i in (10, 2, 1):
        cv2.imwrite(str(tmp_path / f"img{i}.png"), cv2.cvtColor(frame(i), cv2.COLOR_RGB2BGR))
    (tmp_path / "notes.txt").write_text("not a frame")
    info = probe(tmp_path, folder_fps=Fraction(12))
    assert (info.width, info.height, info.fps, info.frame_count) == (64, 48, 12, 3)
    frames = list(read_frames(info))
    assert [np.array_equal(f, frame(i)) for f, i in zip(frames, (1, 2, 10))] == [True, True, True]


def test_folder_with_a_frame_of_another_size_names_that_file(tmp_path):
    cv2.imwrite(str(tmp_path / "0001.png"), frame(0))
    cv2.imwrite(str(tmp_path / "0002.png"), frame(1, h=50))
    with pytest.raises(DataError, match=r"0002\.png: is 64x50 .* 64x48"):
        list(read_frames(probe(tmp_path)))


def test_unreadable_frame_names_that_file(tmp_path):
    cv2.imwrite(str(tmp_path / "0001.png"), frame(0))
    (tmp_path / "0002.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match=r"0002\.png: cannot be read as an image"):
        list(read_frames(probe(tmp_path)))


def test_video_round_trip_keeps_count_size_and_timing(tmp_path):
    path = write_video(tmp_path / "clip.mp4", 10, fps=Fraction(30000, 1001))
    info = probe(path)
    assert (info.width, info.height, info.frame_count, info.fps) == (64, 48, 10, Fraction(30000, 1001))
    frames = list(read_frames(info))
    assert len(frames) == 10
    assert np.median(np.abs(frames[5].astype(int) - frame(5))) <= 1  # lossy at edges, no colour shift
    with av.open(str(path)) as container:
        pts = [float(f.pts * f.time_base) for f in container.decode(video=0)]
    assert pts == pytest.approx([i * 1001 / 30000 for i in range(10)], abs=1e-3)


def test_odd_sizes_are_padded_for_the_encoder_and_read_back(tmp_path):
    path = write_video(tmp_path / "odd.mkv", 3, h=47, w=63)
    info = probe(path)
    assert (info.width, info.height) == (64, 48)  # one edge row/column repeated
    assert len(list(read_frames(info))) == 3


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_truncated_video_is_a_data_error_naming_the_file(tmp_path, suffix):
    data = write_video(tmp_path / f"full{suffix}", 48).read_bytes()
    bad = tmp_path / f"bad{suffix}"
    bad.write_bytes(data[: len(data) // 2])  # a download cut short
    with pytest.raises(DataError, match=rf"bad\{suffix}: .*(truncated|cannot be read)"):
        list(read_frames(probe(bad)))


def test_not_a_video_is_a_data_error(tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("hello " * 100)
    with pytest.raises(DataError, match=r"notes\.mp4: cannot be read as a video"):
        probe(bad)


def test_atomic_output_leaves_nothing_on_interrupt(tmp_path):
    target = tmp_path / "out.mp4"
    with pytest.raises(KeyboardInterrupt):
        with atomic_output(target) as tmp:
            assert tmp.parent == tmp_path and tmp.suffix == ".mp4" and tmp.name.startswith(".out.tmp-")
            tmp.write_bytes(b"half a video")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_atomic_output_replaces_a_folder_only_when_complete(tmp_path):
    target = tmp_path / "frames"
    target.mkdir()
    (target / "old.png").write_bytes(b"x")
    with pytest.raises(OutputError, match="--overwrite"):
        with atomic_output(target):
            pass
    with atomic_output(target, overwrite=True) as tmp:
        (tmp / "frame_000000.png").write_bytes(b"y")
        assert (target / "old.png").exists()  # still the old one while writing
    assert [p.name for p in target.iterdir()] == ["frame_000000.png"]
    assert [p.name for p in tmp_path.iterdir()] == ["frames"]


def test_output_locations_that_cannot_work(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(OutputError, match=r"file\.txt/out\.mp4: cannot create its folder"):
        check_output_location(blocker / "out.mp4", overwrite=False)
    with pytest.raises(OutputError, match=r"out\.xyz: unsupported output type"):
        check_output_location(tmp_path / "out.xyz", overwrite=False)
    with pytest.raises(OutputError, match="already exists"):
        check_output_location(blocker.with_suffix(".txt"), overwrite=False)
