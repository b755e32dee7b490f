"""`kedro run --env video --pipelines data_ingestion` through a real KedroSession, on a copy of the
project whose data/01_raw/videos holds one mp4 and one folder of PNG frames (and, once, a bad clip)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from animvfi_pipeline.data.h5store import TripletStore
from animvfi_pipeline.data.synthetic_video import Shot, make_clip, write_clip

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_data_ingestion import _copy_project, _end_mlflow_runs  # noqa: E402

TINY = {"ingestion": {"size": [64, 36], "workers": 0, "progress": False, "min_motion": 0.0}}


def _run(project: Path, params: dict) -> None:
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    mp = pytest.MonkeyPatch()
    mp.chdir(project)
    try:
        bootstrap_project(project)
        with KedroSession.create(project_path=project, env="video", runtime_params=params) as session:
            session.run(pipeline_names=["data_ingestion"])
        _end_mlflow_runs()
    finally:
        mp.undo()


@pytest.fixture(scope="module")
def video_project(project_root, tmp_path_factory):
    project = _copy_project(project_root, tmp_path_factory.mktemp("project_video"))
    videos = project / "data" / "01_raw" / "videos"
    write_clip(make_clip([Shot(11, 5, hold=2), Shot(12, 4, hold=3, style="paper")], 128, 72), videos / "ep01.mp4")
    write_clip(make_clip([Shot(13, 5, hold=2)], 128, 72), videos / "cuts" / "frames")
    return project


def test_the_video_env_writes_its_own_store_from_clips_and_frame_folders(video_project):
    _run(video_project, TINY)
    store = TripletStore(video_project / "data" / "02_intermediate" / "video_triplets.h5")
    assert not (video_project / "data" / "02_intermediate" / "triplets.h5").exists()  # the default's is untouched
    meta = store.meta
    assert set(meta["source_file"]) == {"ep01.mp4", "cuts/frames"}
    assert (store.width, store.height) == (64, 36)
    assert len(store) == (3 + 1) + 2 + (3 + 1)  # per shot: gap 1 (drawings - 2) and gap 2 (drawings - 4)
    report = json.loads((video_project / "data" / "08_reporting" / "video" / "ingestion_report.json").read_text())
    assert report["n_triplets"] == len(store) and report["n_skipped"] == 0
    assert set(report["dropped"]) == {"flash", "cut", "static", "too_much_motion"}


def test_a_bad_clip_is_skipped_and_named_in_the_report(video_project):
    videos = video_project / "data" / "01_raw" / "videos"
    (videos / "broken.mkv").write_bytes(b"\x1aE\xdf\xa3" + b"not a video" * 50)
    try:
        _run(video_project, TINY)  # conf/video: on_error skip
        report = json.loads((video_project / "data" / "08_reporting" / "video" / "ingestion_report.json").read_text())
        assert [s["name"] for s in report["skipped"]] == ["broken.mkv"]
        assert report["skipped"][0]["path"].endswith("broken.mkv")
        with pytest.raises(Exception, match="broken.mkv"):
            _run(video_project, {"ingestion": {**TINY["ingestion"], "on_error": "fail"}})
    finally:
        (videos / "broken.mkv").unlink()
