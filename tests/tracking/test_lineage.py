"""Lineage: the commit and dirty flag, DVC's hashes, the store's digest, DVC run grouping."""
from __future__ import annotations

import subprocess

import pytest
import yaml

from animvfi_pipeline.tracking.lineage import dvc_group, dvc_lock_hashes, file_md5, git_state, run_name


def _git(cwd, *args):
    subprocess.run(["git", "-c", "user.email=t@example.invalid", "-c", "user.name=t", *args], cwd=cwd, check=True,
                   capture_output=True)


def test_git_commit_and_dirty_flag(tmp_path):
    assert git_state(tmp_path) == {"git.commit": "unknown", "git.dirty": "unknown"}
    _git(tmp_path, "init", "-q")
    (tmp_path / "a.txt").write_text("one")
    _git(tmp_path, "add", "a.txt")
    _git(tmp_path, "commit", "-qm", "one")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    (tmp_path / "untracked.db").write_text("runs")  # mlflow.db, data/: not what "dirty" means
    assert git_state(tmp_path) == {"git.commit": head, "git.dirty": "false"}
    (tmp_path / "a.txt").write_text("two")
    assert git_state(tmp_path) == {"git.commit": head, "git.dirty": "true"}


def test_store_digest_is_the_hash_dvc_records(tmp_path):
    from dvc_data.hashfile.hash import file_md5 as dvc_file_md5

    path = tmp_path / "triplets.h5"
    path.write_bytes(bytes(range(256)) * 50_000)
    assert file_md5(path) == dvc_file_md5(str(path))


def test_dvc_lock_hashes_of_every_output(tmp_path):
    lock = {"schema": "2.0", "stages": {
        "ingest": {"cmd": "x", "outs": [{"path": "data/02_intermediate/triplets.h5", "md5": "aa", "size": 1}]},
        "train_vfi": {"cmd": "y", "deps": [{"path": "src", "md5": "dd.dir"}],
                      "outs": [{"path": "data/06_models/vfi.pt", "md5": "bb", "size": 2}]},
    }}
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(lock))
    assert dvc_lock_hashes(tmp_path / "dvc.lock") == {"dvc.data/02_intermediate/triplets.h5": "aa",
                                                      "dvc.data/06_models/vfi.pt": "bb"}
    assert dvc_lock_hashes(tmp_path / "missing.lock") == {}


def test_run_name_a_person_can_scan():
    params = {"vfi_model": {"backbone": "resunet"}, "flow_model": {"init": "dis"}}
    assert run_name("local", params, "0123456789abcdef", "true") == "local resunet flow-dis 0123456+dirty"
    assert run_name("atd12k", params, "0123456789abcdef", "false", "evaluation").endswith("0123456 evaluation")


@pytest.mark.parametrize("environ, grouped", [
    ({}, False),
    ({"DVC_STAGE": "evaluate", "DVC_EXP_NAME": "tidy-bass", "DVC_EXP_BASELINE_REV": "abc"}, True),
])
def test_dvc_group(environ, grouped):
    tags = dvc_group(environ)
    assert bool(tags) is grouped
    if grouped:
        assert tags["dvc.exp_name"] == "tidy-bass" and tags["dvc.stage"] == "evaluate"
        other_stage = dvc_group({**environ, "DVC_STAGE": "train_vfi"})
        assert other_stage["animvfi.pipeline_run_id"] == tags["animvfi.pipeline_run_id"]
        other_exp = dvc_group({**environ, "DVC_EXP_NAME": "other"})
        assert other_exp["animvfi.pipeline_run_id"] != tags["animvfi.pipeline_run_id"]
