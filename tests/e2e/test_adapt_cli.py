"""`animvfi interpolate --adapt` through the real console script, with the model a `kedro run`
trained, on an mp4 with a cut and held drawings (data/synthetic_video.py)."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from animvfi_pipeline.data.synthetic_video import Shot, make_clip, write_clip

from project_copy import BIN, project_env, run


@pytest.fixture(scope="module")
def clip_mp4(tmp_path_factory) -> tuple[Path, int]:
    clip = make_clip([Shot(seed=21, drawings=8), Shot(seed=22, drawings=6, hold=2)], 128, 80, frames_per_window=4)
    return write_clip(clip, tmp_path_factory.mktemp("clip") / "clip.mp4"), clip.n_frames


def count_frames(folder: Path) -> int:
    return len(list(folder.glob("*.png")))


def test_adapt_says_which_model_it_used_and_writes_every_frame(finished_project, clip_mp4, tmp_path):
    clip, n = clip_mp4
    out = tmp_path / "smooth"
    proc = run([str(BIN / "animvfi"), "interpolate", str(clip), "-o", str(out), "--factor", "2", "--adapt",
                "--adapt-steps", "3"], cwd=finished_project)
    decision = [line for line in proc.stderr.splitlines() if "adapt:" in line and "held-out PSNR" in line]
    assert len(decision) == 1, proc.stderr
    assert "3 steps" in decision[0] and ("using the adapted model" in decision[0]
                                         or "using the original model" in decision[0])
    assert count_frames(out) == 2 * n


def test_adapt_quiet_prints_nothing(finished_project, clip_mp4, tmp_path):
    clip, n = clip_mp4
    out = tmp_path / "smooth"
    proc = run([str(BIN / "animvfi"), "interpolate", str(clip), "-o", str(out), "--adapt", "--adapt-steps", "2",
                "-q"], cwd=finished_project)
    assert proc.stdout == "" and proc.stderr == ""
    assert count_frames(out) == 2 * n


def test_adapt_options_without_adapt_are_a_usage_error(finished_project, clip_mp4, tmp_path):
    clip, _ = clip_mp4
    proc = subprocess.run([str(BIN / "animvfi"), "interpolate", str(clip), "-o", str(tmp_path / "x"),
                           "--adapt-steps", "2"], cwd=finished_project, env=project_env(), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2 and "only apply with --adapt" in proc.stderr
    assert not (tmp_path / "x").exists()
