"""Video ingestion on tiny synthetic clips whose cuts, holds and drawings are known exactly."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from animvfi_pipeline.data.h5store import TripletStore
from animvfi_pipeline.data.synthetic_video import Shot, make_clip, write_clip
from animvfi_pipeline.data.video_ingest import VideoIngestionConfig, write_video_triplets_h5
from animvfi_pipeline.data.video_source import VideoFolder
from animvfi_pipeline.errors import DataError

W, H = 128, 72


def config(**overrides) -> VideoIngestionConfig:
    # min_motion 0: keep every triplet, so the stored set is exactly the drawings' triplets.
    settings = dict(size=(W, H), gaps=(1, 2), min_motion=0.0, workers=0, val_fraction=0.0, test_fraction=0.0)
    return VideoIngestionConfig(**{**settings, **overrides})


def expected_triplets(clip, gaps=(1, 2)):
    """(first, middle, last) frame indices: the first frame of each drawing, within each shot."""
    firsts: dict[int, list[int]] = {}
    for i, (shot, drawing) in enumerate(clip.drawing_of):
        if i == 0 or clip.drawing_of[i - 1] != (shot, drawing):
            firsts.setdefault(shot, []).append(i)
    return sorted((d[k], d[k + g], d[k + 2 * g]) for d in firsts.values() for g in gaps for k in range(len(d) - 2 * g))


@pytest.fixture(scope="module")
def cut_clip():
    # Two different scenes, on twos then on threes; the cut is a quiet one (cel -> paper).
    return make_clip([Shot(11, 6, hold=2, style="cel"), Shot(12, 5, hold=3, style="paper")], W, H)


def test_finds_the_cut_collapses_the_holds_and_stores_the_expected_triplets(tmp_path, cut_clip):
    write_clip(cut_clip, tmp_path / "clips" / "scene.mp4")
    result = write_video_triplets_h5(tmp_path / "store.h5", VideoFolder.scan(tmp_path / "clips"), config(),
                                     progress=False)
    store = TripletStore(tmp_path / "store.h5")
    meta = store.meta
    stored = sorted(zip(meta["frame1_index"], meta["frame2_index"], meta["frame3_index"]))
    assert stored == expected_triplets(cut_clip)
    assert result.n_triplets == len(store) == len(stored)
    # Never across the cut, and each triplet is three distinct drawings of one shot.
    for _, row in meta.iterrows():
        drawings = [cut_clip.drawing_of[row[f"frame{k}_index"]] for k in (1, 2, 3)]
        assert len({shot for shot, _ in drawings}) == 1 and len(set(drawings)) == 3
        assert row["shot"] == drawings[0][0] and row["source_file"] == "scene.mp4"
        assert row["frame2_time"] == pytest.approx(row["frame2_index"] / 24, abs=1e-6)  # seconds, 24 fps
    assert set(meta["clip"]) == {"scene.mp4:shot000", "scene.mp4:shot001"}
    assert store.frames(0).shape == (3, H, W, 3) and store.flows(0).shape == (2, 2, H, W)
    assert set(meta["flow_source"]) == {"dis"}


def test_a_flash_never_ends_up_inside_a_triplet(tmp_path):
    import cv2

    clip = make_clip([Shot(5, 6, hold=1)], W, H)
    write_clip(clip, tmp_path / "clips" / "a.mp4")
    frames = tmp_path / "clips" / "flash"
    write_clip(clip, frames)
    bright = sorted(frames.iterdir())[2]
    cv2.imwrite(str(bright), cv2.imread(str(bright)) // 4 + 190)  # frame 2: a white flash
    write_video_triplets_h5(tmp_path / "store.h5", VideoFolder.scan(tmp_path / "clips"), config(gaps=(1,)),
                            progress=False)
    store = TripletStore(tmp_path / "store.h5")
    meta = store.meta
    flashed = meta[meta["source_file"] == "flash"]
    # Cut off as a shot of its own, or dropped as a flash: either way no triplet spans it.
    assert not ((flashed["frame1_index"] < 2) & (flashed["frame3_index"] > 2)).any()
    assert len(meta[meta["source_file"] == "a.mp4"]) + store.dropped["static"] == len(expected_triplets(clip, (1,)))
    assert set(store.dropped) == {"flash", "cut", "static", "too_much_motion"}


def test_has_flash_measures_brightness_against_the_ends_line():
    from animvfi_pipeline.data.video_triplets import has_flash

    fade = [0.2, 0.3, 0.4, 0.5, 0.6]  # a steady fade is no flash
    assert not has_flash(fade, 0, 4, 0.08)
    assert has_flash([0.2, 0.3, 0.9, 0.5, 0.6], 0, 4, 0.08)


def test_static_and_too_fast_triplets_are_told_apart():
    from animvfi_pipeline.data.video_triplets import motion_verdict

    frames = np.stack([make_clip([Shot(9, 3)], W, H).frame(i) for i in range(3)])
    flow = np.zeros((2, H, W), np.float32)
    assert motion_verdict(frames, flow, 0.12, min_motion=1.0, max_motion=0.25) == "static"
    flow[0] = 5.0
    assert motion_verdict(frames, flow, 0.12, min_motion=1.0, max_motion=0.25) is None
    flow[0] = 0.3 * W
    assert motion_verdict(frames, flow, 0.12, min_motion=1.0, max_motion=0.25) == "too_much_motion"
    other = make_clip([Shot(30, 3, style="paper")], W, H).frame(2)
    assert motion_verdict(np.stack([frames[0], frames[1], 255 - other]), None, 0.12, 1.0, 0.25) == "cut"


def test_splits_are_whole_shots_and_stable_when_a_clip_is_added(tmp_path):
    clips = tmp_path / "clips"
    for k in range(4):
        write_clip(make_clip([Shot(20 + 2 * k, 4), Shot(21 + 2 * k, 4)], W, H), clips / f"c{k}.mp4")
    cfg = config(gaps=(1,), val_fraction=0.3, test_fraction=0.3)
    write_video_triplets_h5(tmp_path / "a.h5", VideoFolder.scan(clips), cfg, progress=False)
    before = TripletStore(tmp_path / "a.h5").meta
    assert before.groupby("clip")["split"].nunique().max() == 1  # never inside a shot
    assert {"train", "val", "test"} <= set(before["split"])
    write_clip(make_clip([Shot(40, 4)], W, H), clips / "new.mp4")
    write_video_triplets_h5(tmp_path / "b.h5", VideoFolder.scan(clips), cfg, progress=False)
    after = TripletStore(tmp_path / "b.h5").meta
    assert set(after["source_file"]) - set(before["source_file"]) == {"new.mp4"}
    old = after[after["source_file"] != "new.mp4"].reset_index(drop=True)
    assert list(old["name"]) == list(before["name"]) and list(old["split"]) == list(before["split"])


def test_whole_files_go_to_the_split_conf_names(tmp_path):
    clips = tmp_path / "clips"
    write_clip(make_clip([Shot(1, 4)], W, H), clips / "train_me.mp4")
    write_clip(make_clip([Shot(2, 4)], W, H), clips / "held_out" / "exam.mp4")
    write_video_triplets_h5(tmp_path / "s.h5", VideoFolder.scan(clips), config(test_files=("held_out/*",)),
                            progress=False)
    meta = TripletStore(tmp_path / "s.h5").meta
    assert set(meta.loc[meta["source_file"] == "held_out/exam.mp4", "split"]) == {"test"}
    assert set(meta.loc[meta["source_file"] == "train_me.mp4", "split"]) == {"train"}


def test_a_rerun_writes_the_same_store(tmp_path, cut_clip):
    write_clip(cut_clip, tmp_path / "clips" / "scene.mkv")
    folder = VideoFolder.scan(tmp_path / "clips")
    for name in ("one.h5", "two.h5"):
        write_video_triplets_h5(tmp_path / name, folder, config(workers=1), progress=False)
    one, two = TripletStore(tmp_path / "one.h5"), TripletStore(tmp_path / "two.h5")
    assert one.meta.equals(two.meta)
    assert all((one.frames(i) == two.frames(i)).all() and (one.flows(i) == two.flows(i)).all() for i in range(len(one)))


def _bad_inputs(clips):
    (clips / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 200)
    good = clips / "good.mp4"
    write_clip(make_clip([Shot(3, 4)], W, H), good)
    data = good.read_bytes()
    (clips / "truncated.mp4").write_bytes(data[: len(data) // 2])
    mixed = clips / "mixed"
    write_clip(make_clip([Shot(4, 4)], W, H), mixed)
    write_clip(make_clip([Shot(4, 4)], 64, 36), clips / "small")
    shutil.copy(sorted((clips / "small").iterdir())[0], mixed / "99999.png")
    shutil.rmtree(clips / "small")


def test_bad_clips_are_skipped_and_named(tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    _bad_inputs(clips)
    result = write_video_triplets_h5(tmp_path / "s.h5", VideoFolder.scan(clips), config(on_error="skip"),
                                     progress=False)
    store = TripletStore(tmp_path / "s.h5")
    assert set(store.meta["source_file"]) == {"good.mp4"}
    skipped = {s["name"]: s for s in result.skipped}
    assert set(skipped) == {"corrupt.mp4", "truncated.mp4", "mixed"}
    assert skipped["mixed"]["path"].endswith("99999.png")
    assert json.loads(json.dumps(store.skipped)) == result.skipped


def test_a_bad_clip_fails_the_run_with_its_name_and_writes_nothing(tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    _bad_inputs(clips)
    with pytest.raises(DataError, match="corrupt.mp4"):
        write_video_triplets_h5(tmp_path / "s.h5", VideoFolder.scan(clips), config(on_error="fail"), progress=False)
    assert not (tmp_path / "s.h5").exists()


def test_a_clip_that_changes_between_the_passes_leaves_no_triplets(tmp_path, monkeypatch):
    import animvfi_pipeline.data.video_ingest as video_ingest

    clips = tmp_path / "clips"
    write_clip(make_clip([Shot(6, 5)], W, H), clips / "a.mp4")
    write_clip(make_clip([Shot(7, 5)], W, H), clips / "b.mp4")
    analyse = video_ingest._analyse_all

    def analyse_then_remove(*args, **kwargs):
        plans = analyse(*args, **kwargs)
        (clips / "a.mp4").unlink()  # gone before the second pass
        return plans

    monkeypatch.setattr(video_ingest, "_analyse_all", analyse_then_remove)
    result = write_video_triplets_h5(tmp_path / "s.h5", VideoFolder.scan(clips), config(on_error="skip"),
                                     progress=False)
    assert [s["name"] for s in result.skipped] == ["a.mp4"]
    assert "does not exist" in result.skipped[0]["reason"]
    assert set(TripletStore(tmp_path / "s.h5").meta["source_file"]) == {"b.mp4"}


def test_a_folder_without_clips_is_an_error(tmp_path):
    with pytest.raises(DataError, match="video folder does not exist"):
        VideoFolder.scan(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no videos"):
        write_video_triplets_h5(tmp_path / "s.h5", VideoFolder.scan(tmp_path / "empty"), config(), progress=False)
