"""Where a run came from: git commit, DVC lock hashes, the data it read, a name a person can scan.

Everything here is read-only and cheap; failures (no git, no dvc.lock) give "unknown" or nothing,
never an error, because lineage must not stop a run.
"""
from __future__ import annotations

import hashlib
import json
import logging
import subprocess
from pathlib import Path
from typing import Any, Mapping

import yaml
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


def file_md5(path: str | Path, chunk: int = 1 << 22) -> str:
    """The file's MD5, which is also the hash DVC records for it in dvc.lock."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _git(root: Path, *args: str) -> str | None:
    try:
        proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def git_state(root: str | Path) -> dict[str, str]:
    """``{"git.commit": sha or "unknown", "git.dirty": "true" | "false" | "unknown"}``.

    Dirty means tracked files differ from the commit; untracked files (data, mlflow.db) do not count.
    """
    root = Path(root)
    commit = _git(root, "rev-parse", "HEAD")
    status = _git(root, "status", "--porcelain", "--untracked-files=no") if commit else None
    return {
        "git.commit": commit or "unknown",
        "git.dirty": "unknown" if status is None else str(bool(status)).lower(),
    }


def dvc_lock_hashes(lock_path: str | Path) -> dict[str, str]:
    """``{"dvc.<out path>": md5}`` for every output recorded in dvc.lock (data and weights)."""
    path = Path(lock_path)
    if not path.is_file():
        return {}
    try:
        lock = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        log.warning("%s: unreadable, DVC hashes not tagged: %s", path, exc)
        return {}
    hashes = {}
    for stage in (lock.get("stages") or {}).values():
        for out in stage.get("outs") or []:
            if "path" in out and "md5" in out:
                hashes[f"dvc.{out['path']}"] = str(out["md5"])
    return hashes


def run_name(env: str, params: Mapping[str, Any], commit: str, dirty: str, pipeline: str | None = None) -> str:
    """e.g. ``base unet dis a1b2c3d`` (``+dirty`` when the tree was), then the pipeline if not all."""
    backbone = (params.get("vfi_model") or {}).get("backbone", "?")
    flow_init = (params.get("flow_model") or {}).get("init", "?")
    short = commit[:7] + ("+dirty" if dirty == "true" else "")
    parts = [env, str(backbone), f"flow-{flow_init}", short]
    if pipeline and pipeline != "__default__":
        parts.append(pipeline)
    return " ".join(parts)


def split_counts(store: Any) -> dict[str, int]:
    """Triplets per split of a TripletStore."""
    return {split: int(len(store.indices(split))) for split in SPLITS}


class TripletStoreDataset(MetaDataset):
    """A MetaDataset (metadata only, the frames stay in the store) whose profile counts triplets."""

    def __init__(self, source: Any, name: str, digest: str, counts: Mapping[str, int]):
        self._counts = dict(counts)
        super().__init__(source=source, name=name, digest=digest)

    @property
    def profile(self) -> dict[str, int]:
        return {"triplets": sum(self._counts.values()), **{f"{k}_triplets": n for k, n in self._counts.items()}}

    def to_dict(self) -> dict[str, str]:
        return {**super().to_dict(), "profile": json.dumps(self.profile)}


def store_dataset(store: Any, digest: str, name: str = "triplet_store") -> TripletStoreDataset:
    """The TripletStore as an MLflow dataset: its content hash (``file_md5``, what DVC records) as
    digest, its file as source, triplets per split as profile."""
    source = resolve_dataset_source(str(Path(store.path).resolve()))
    return TripletStoreDataset(source=source, name=name, digest=digest, counts=split_counts(store))


def dvc_group(environ: Mapping[str, str]) -> dict[str, str]:
    """Tags tying the stage runs of one ``dvc repro`` / ``dvc exp run`` together (empty outside DVC).

    DVC tells a stage command its stage (DVC_STAGE) and, for ``dvc exp run``, the experiment
    (DVC_EXP_NAME, DVC_EXP_BASELINE_REV). A plain ``dvc repro`` names no run, so its stages share
    the identity of the ``dvc`` process that runs them all (host, pid, start time).
    """
    stage = environ.get("DVC_STAGE")
    if not stage:
        return {}
    tags = {"dvc.stage": stage}
    exp = environ.get("DVC_EXP_NAME")
    if exp:
        tags["dvc.exp_name"] = exp
        baseline = environ.get("DVC_EXP_BASELINE_REV", "")
        tags["dvc.exp_baseline"] = baseline
        key = f"exp|{exp}|{baseline}"
    else:
        key = f"repro|{_dvc_process_identity()}"
    tags["animvfi.pipeline_run_id"] = hashlib.sha1(key.encode()).hexdigest()[:12]
    return tags


def _dvc_process_identity() -> str:
    import socket

    import psutil

    try:
        for proc in psutil.Process().parents():
            cmd = " ".join(proc.cmdline())
            if "dvc" in cmd and ("repro" in cmd or "exp" in cmd):
                return f"{socket.gethostname()}|{proc.pid}|{proc.create_time():.2f}"
    except psutil.Error:
        pass
    return f"{socket.gethostname()}|ppid-unknown"
