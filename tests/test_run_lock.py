"""The project run lock with real processes: a second run is refused naming the first, a lock
left by a killed run is taken over, and two clones never block each other."""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from animvfi_pipeline.run_lock import RunLock, RunLockedError

HOLDER = """
import sys
from animvfi_pipeline.run_lock import RunLock
lock = RunLock(sys.argv[1], command="kedro run --pipelines vfi_training")
lock.acquire()
print("locked", flush=True)
sys.stdin.read()  # hold it until the test closes our stdin (or kills us)
lock.release()
"""


def start_holder(path: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


@pytest.fixture
def holder(tmp_path):
    procs = []

    def start(path: Path) -> subprocess.Popen:
        procs.append(start_holder(path))
        return procs[-1]

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


def test_second_run_is_refused_at_once_naming_the_running_one(tmp_path, holder):
    path = tmp_path / "clone" / "data" / ".run.lock"
    first = holder(path)
    with pytest.raises(RunLockedError) as refused:
        RunLock(path).acquire()
    message = str(refused.value)
    assert message.startswith(str(path))
    assert f"pid {first.pid}" in message
    assert "kedro run --pipelines vfi_training" in message


def test_lock_is_free_again_after_the_run_releases_it(tmp_path, holder):
    path = tmp_path / ".run.lock"
    first = holder(path)
    first.stdin.close()  # the holder releases and exits
    assert first.wait(timeout=30) == 0
    with RunLock(path) as lock:
        assert lock.held


def test_lock_of_a_killed_run_is_taken_over_with_a_warning(tmp_path, holder, caplog):
    path = tmp_path / ".run.lock"
    first = holder(path)
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=30)
    assert str(first.pid) in path.read_text()  # it never got to release: its name is still there

    with caplog.at_level(logging.WARNING, logger="animvfi_pipeline.run_lock"), RunLock(path) as lock:
        assert lock.held
        assert f'"pid": {os.getpid()}' in path.read_text()
    assert f"pid {first.pid}" in caplog.text and "taking it over" in caplog.text
    assert path.read_text() == ""  # released: an empty file means free


def test_two_clones_run_side_by_side(tmp_path, holder):
    holder(tmp_path / "clone_a" / "data" / ".run.lock")
    with RunLock(tmp_path / "clone_b" / "data" / ".run.lock") as lock:
        assert lock.held
