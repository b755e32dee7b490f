"""kill -9 a real `kedro run` while it writes the store, then after the first training checkpoint;
run the same command again: it completes (training resumed), the previous store was never
damaged, nothing half-written or temporary is left. A second run beside a live one is refused."""
from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import signal
import subprocess
import time
from pathlib import Path

import torch

from animvfi_pipeline.data.h5store import TripletStore
from animvfi_pipeline.models.checkpoint import load_flownet
from animvfi_pipeline.run_lock import RunLock

from project_copy import BIN, copy_project, project_env

EPOCHS = 3
# Flow pretraining: the same training loop and resume as vfi_training, without the MLflow model
# logging that would double the time of this test.
COMMAND = [str(BIN / "kedro"), "run", "--pipelines", "data_ingestion,flow_pretraining",
           "--params", f"flow_training.loop.epochs={EPOCHS},flow_training.loop.resume=true"]


def start(project: Path, log: Path) -> subprocess.Popen:
    # A session of its own, so that killing its group also kills the ingestion workers.
    return subprocess.Popen(COMMAND, cwd=project, env=project_env(), stdout=log.open("w"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def kill_when(proc: subprocess.Popen, ready, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            assert proc.poll() is None, "the run ended before the moment it was to be killed at"
            assert time.monotonic() < deadline, "timed out waiting for the moment to kill the run"
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)


def log_text(path: Path) -> str:
    return " ".join(path.read_text().split())  # rich wraps long lines


def leftovers(data: Path) -> list[Path]:
    return [p for p in data.rglob("*") if ".tmp-" in p.name or ".old-" in p.name]


def test_killed_runs_rerun_to_completion_leaving_nothing_half_written(finished_project, tmp_path):
    project = tmp_path / "clone"
    shutil.copytree(finished_project, project, symlinks=True)
    data = project / "data"
    store_path = data / "02_intermediate" / "triplets.h5"
    checkpoints = data / "06_models" / "checkpoints" / "flow"
    shutil.rmtree(checkpoints, ignore_errors=True)
    previous_store = TripletStore(store_path).meta

    # 1. killed while the new store is being written: the previous store is intact.
    kill_when(start(project, tmp_path / "run1.log"), lambda: any(store_path.parent.glob("triplets.h5.tmp-*")))
    assert any(store_path.parent.glob("triplets.h5.tmp-*"))  # what kill -9 leaves behind
    assert TripletStore(store_path).meta.equals(previous_store)

    # 2. killed after the first training checkpoint, while training goes on.
    kill_when(start(project, tmp_path / "run2.log"), lambda: (checkpoints / "last.pt").exists())
    assert "taking it over" in log_text(tmp_path / "run2.log")  # the lock run 1 left behind

    # 3. the same command again runs to the end, resuming the training.
    third = start(project, tmp_path / "run3.log")
    assert third.wait(timeout=900) == 0, (tmp_path / "run3.log").read_text()[-4000:]
    log = log_text(tmp_path / "run3.log")
    assert "resumed from" in log and "after epoch" in log
    assert leftovers(data) == []
    TripletStore(store_path).frames(0)
    model = load_flownet(data / "06_models" / "flownet.pt")  # its checksum is verified on load
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert torch.load(checkpoints / "last.pt", weights_only=True)["epoch"] == EPOCHS


def test_a_second_kedro_run_is_refused_naming_the_first(tmp_path):
    project = copy_project(tmp_path / "clone")
    with RunLock(project / "data" / ".run.lock", command="kedro run --pipelines vfi_training"):
        proc = subprocess.run([str(BIN / "kedro"), "run"], cwd=project, env=project_env(), capture_output=True,
                              text=True, timeout=300)
    output = " ".join((proc.stdout + proc.stderr).split())  # rich wraps long lines
    assert proc.returncode != 0
    assert "another run is in progress" in output and f"pid {os.getpid()}" in output
    assert "kedro run --pipelines vfi_training" in output
    assert "Running node" not in output  # refused before anything ran
    assert mlflow_runs(project) == 0  # and before kedro-mlflow opened a run


def mlflow_runs(project: Path) -> int:
    if not (project / "mlflow.db").exists():
        return 0
    with contextlib.closing(sqlite3.connect(project / "mlflow.db")) as db:
        if not db.execute("select name from sqlite_master where name = 'runs'").fetchone():
            return 0
        return db.execute("select count(*) from runs").fetchone()[0]
