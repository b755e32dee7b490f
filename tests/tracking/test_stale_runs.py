"""A run whose process was killed is closed as KILLED by the next run; live runs are left alone."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from animvfi_pipeline.tracking.stale_runs import NOTE_TAG, close_orphaned_runs, owner_tags


@pytest.fixture(scope="module")
def uri(tmp_path_factory) -> str:
    # One store for the module: creating an SQLite store (its migrations) takes seconds.
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    MlflowClient(uri).create_experiment("animvfi_pipeline")
    return uri


def test_killed_run_is_marked_killed_with_a_note(uri):
    client = MlflowClient(uri)
    experiment_id = client.get_experiment_by_name("animvfi_pipeline").experiment_id
    # A run owned by another process (as `kedro run` tags its run), which then gets `kill -9`:
    # no chance to close its run.
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        dead_run = client.create_run(experiment_id, tags=owner_tags(proc.pid)).info.run_id
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert client.get_run(dead_run).info.status == "RUNNING"
    live_run = client.create_run(experiment_id, tags=owner_tags()).info.run_id  # this test process: alive

    closed = close_orphaned_runs(client, experiment_id, current_run_id=live_run)

    assert closed == [dead_run]
    dead = client.get_run(dead_run)
    assert dead.info.status == "KILLED" and dead.info.end_time is not None
    assert str(proc.pid) in dead.data.tags[NOTE_TAG] and live_run in dead.data.tags[NOTE_TAG]
    assert client.get_run(live_run).info.status == "RUNNING"
    assert close_orphaned_runs(client, experiment_id, current_run_id=live_run) == []  # once is enough


def test_a_recycled_pid_does_not_keep_a_dead_run_open(uri):
    # Same pid, another process (different start time): the run's owner is gone all the same.
    client = MlflowClient(uri)
    experiment_id = client.create_experiment("recycled")
    tags = {**owner_tags(), "animvfi.process_start": "12345.00"}
    run_id = client.create_run(experiment_id, tags=tags).info.run_id
    assert close_orphaned_runs(client, experiment_id) == [run_id]
