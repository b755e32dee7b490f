"""A throwaway copy of the project, shrunk to tiny settings, for end-to-end tests.

The copy holds exactly what a fresh clone holds (tracked files, plus files not yet committed but
not ignored), so these tests exercise the front door: `kedro run`, `dvc repro`, notebooks, MLflow.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

# Dotted keys into conf/base/parameters_*.yml: a run of all four pipelines in well under a minute.
TINY_PARAMS: dict[str, dict[str, Any]] = {
    "parameters_data_ingestion.yml": {
        "raw_data.synthetic.width": 96,
        "raw_data.synthetic.height": 64,
        "raw_data.synthetic.n_train": 16,
        "raw_data.synthetic.n_test": 6,
        "raw_data.synthetic.n_unseen_val": 2,
        "raw_data.synthetic.triplets_per_clip": 2,
        "ingestion.size": [96, 64],
        "ingestion.val_fraction": 0.25,
        "ingestion.progress": False,
    },
    "parameters_flow_pretraining.yml": {
        "flow_training.data.crop": [64, 64],
        "flow_training.loop.epochs": 1,
        "flow_training.loop.batch_size": 4,
        "flow_training.loop.num_workers": 0,
        "flow_training.loop.max_steps_per_epoch": 3,
    },
    "parameters_vfi_training.yml": {
        "vfi_training.data.crop": [64, 64],
        "vfi_training.loop.epochs": 1,
        "vfi_training.loop.batch_size": 4,
        "vfi_training.loop.num_workers": 0,
        "vfi_training.loop.max_steps_per_epoch": 3,
    },
    "parameters_evaluation.yml": {},
}


def project_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(DO_NOT_TRACK="1", KEDRO_DISABLE_TELEMETRY="1", MLFLOW_DISABLE_TELEMETRY="true",
               PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", PYTHONUNBUFFERED="1")
    return env


def copy_project(dest: Path) -> Path:
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=PROJECT_ROOT, check=True, capture_output=True,
    ).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = PROJECT_ROOT / rel
        if not src.is_file():  # deleted in the work tree but still in the index
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
    return dest


def set_dotted(tree: dict, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for key in parents:
        tree = tree[key]
    if leaf not in tree:
        raise KeyError(f"{dotted}: no such parameter (conf changed? update TINY_PARAMS)")
    tree[leaf] = value


def shrink_params(project: Path, extra: dict[str, dict[str, Any]] | None = None) -> None:
    for name, values in {**TINY_PARAMS, **(extra or {})}.items():
        path = project / "conf" / "base" / name
        params = yaml.safe_load(path.read_text())
        for dotted, value in values.items():
            set_dotted(params, dotted, value)
        path.write_text(yaml.safe_dump(params, sort_keys=False))


def git_commit_all(project: Path, message: str) -> str:
    """``git init`` (if needed), commit everything, return the commit's sha."""
    git = ["git", "-c", "user.email=ci@example.invalid", "-c", "user.name=ci"]
    if not (project / ".git").exists():
        run(["git", "init", "-q", "-b", "main"], cwd=project)
    run([*git, "add", "-A"], cwd=project)
    run([*git, "commit", "-qm", message], cwd=project)
    return run(["git", "rev-parse", "HEAD"], cwd=project).stdout.strip()


def run(cmd: list[str], cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=project_env(), capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(cmd: list[str], cwd: Path, port: int, timeout: float = 180) -> Iterator[str]:
    """Start a server (``cmd``, listening on 127.0.0.1:``port``) in its own process group, wait for
    its /health, yield its base URL, and stop the whole group by its process id."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=project_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(f"{base}/health", timeout=2)
                break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError(f"{' '.join(cmd)} exited ({proc.returncode}):\n{proc.stderr.read()[-3000:]}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{' '.join(cmd)}: no answer on {base}/health after {timeout:.0f} s")
                time.sleep(1)
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and its workers, by the group's process id
        proc.wait(timeout=30)
