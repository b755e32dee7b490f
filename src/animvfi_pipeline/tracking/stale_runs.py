"""Runs whose process died (kill -9, OOM, a closed laptop) stay RUNNING in MLflow forever: nobody
is left to close them. Each run therefore records which process owns it, and the next run on the
same machine closes the orphans it finds as KILLED, with a note saying so.
"""
from __future__ import annotations

import logging
import os
import socket
from typing import Any

import psutil

log = logging.getLogger(__name__)

HOST_TAG = "animvfi.host"
PID_TAG = "animvfi.pid"
PROCESS_START_TAG = "animvfi.process_start"  # psutil create_time: a recycled pid is another process
NOTE_TAG = "mlflow.note.content"  # the run's description in the MLflow UI


def _process_start(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


def owner_tags(pid: int | None = None) -> dict[str, str]:
    """Tags that identify the process that owns a run (this one by default)."""
    pid = os.getpid() if pid is None else pid
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(pid), PROCESS_START_TAG: f"{_process_start(pid) or 0:.2f}"}


def owner_alive(tags: dict[str, str]) -> bool:
    """Whether the process recorded in ``tags`` still runs (same pid *and* same start time)."""
    try:
        pid = int(tags[PID_TAG])
        started = float(tags.get(PROCESS_START_TAG, "0"))
    except (KeyError, ValueError):
        return True  # not ours to judge
    now_started = _process_start(pid)
    return now_started is not None and abs(now_started - started) < 1.0


def close_orphaned_runs(client: Any, experiment_id: str, current_run_id: str | None = None) -> list[str]:
    """Mark this host's RUNNING runs of ``experiment_id`` whose process is gone as KILLED, with a note.

    Runs started on other machines are left alone: their processes cannot be checked from here.
    Returns the ids of the runs closed.
    """
    host = socket.gethostname()
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"attributes.status = 'RUNNING' and tags.`{HOST_TAG}` = '{host}'",
        max_results=1000,
    )
    closed = []
    for run in runs:
        if run.info.run_id == current_run_id or owner_alive(run.data.tags):
            continue
        note = (f"Marked KILLED by a later run ({current_run_id or 'unknown'}): process "
                f"{run.data.tags.get(PID_TAG)} on {host} ended without closing this run (killed or crashed).")
        previous = run.data.tags.get(NOTE_TAG)
        client.set_tag(run.info.run_id, NOTE_TAG, f"{previous}\n\n{note}" if previous else note)
        client.set_tag(run.info.run_id, "animvfi.closed_by", current_run_id or "unknown")
        client.set_terminated(run.info.run_id, status="KILLED")
        log.warning("MLflow run %s was left RUNNING by dead process %s: marked KILLED",
                    run.info.run_id, run.data.tags.get(PID_TAG))
        closed.append(run.info.run_id)
    return closed
