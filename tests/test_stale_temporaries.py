"""What a killed writer leaves behind (``<name>.tmp-<pid>``) is removed by the next write of the
same file; a live writer's temporary is never touched. `animvfi interpolate` killed with -9
in mid-render, then run again, writes the whole video and leaves no temporary."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from animvfi_pipeline.inference.video_io import probe
from animvfi_pipeline.utils_io import atomic_path


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid  # reaped: no process has this pid now (until the kernel reuses it)


def test_next_write_removes_a_dead_writers_temporary_and_keeps_a_live_ones(tmp_path):
    target = tmp_path / "metrics.json"
    dead = tmp_path / f"metrics.json.tmp-{dead_pid()}"
    dead.write_text('{"half": ')
    live_writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = tmp_path / f"metrics.json.tmp-{live_writer.pid}"
        live.write_text("being written")
        unrelated = tmp_path / f"other.json.tmp-{dead_pid()}"
        unrelated.write_text("not ours to judge")
        with atomic_path(target) as tmp:
            tmp.write_text("{}")
        assert target.read_text() == "{}"
        assert not dead.exists() and live.exists() and unrelated.exists()
    finally:
        live_writer.kill()
        live_writer.wait()


def test_interpolate_killed_mid_render_then_rerun(tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(8):
        img = np.full((72, 128, 3), 200, np.uint8)
        cv2.circle(img, (20 + 9 * i, 36), 12, (30, 60, 220), -1)
        cv2.imwrite(str(frames / f"{i:04d}.png"), img)
    output = tmp_path / "out" / "smooth.mp4"
    cmd = [sys.executable, "-m", "animvfi_pipeline.console", "interpolate", str(frames), "-o", str(output),
           "--model", "classical", "--factor", "4", "--preset", "ultrafast", "-q"]  # no lookahead:
    # the encoder writes the first frame at once, so the temporary video exists while rendering

    proc = subprocess.Popen(cmd)
    try:
        deadline = time.monotonic() + 300
        while not list(output.parent.glob(".smooth.tmp-*.mp4")):  # the render has started
            assert proc.poll() is None, "interpolate ended before it could be killed"
            assert time.monotonic() < deadline, "interpolate did not start rendering"
            time.sleep(0.01)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not output.exists()  # never a half-written video under the requested name

    subprocess.run(cmd, check=True, timeout=300)
    assert probe(output).frame_count == 8 * 4
    assert sorted(p.name for p in output.parent.iterdir()) == ["smooth.mp4"]
