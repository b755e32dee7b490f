"""DVC from a fresh clone: `dvc repro` runs everything, a second does nothing, and
`dvc exp run -S` reruns only the stages downstream of the changed parameter."""
from __future__ import annotations

import re

from project_copy import BIN, copy_project, run, shrink_params


def _stages_run(output: str) -> list[str]:
    return re.findall(r"Running stage '([^']+)'", output)


def test_repro_noop_and_exp_run(tmp_path):
    project = copy_project(tmp_path / "clone")
    shrink_params(project)
    run(["git", "init", "-q", "-b", "main"], cwd=project)
    run(["git", "-c", "user.email=ci@example.invalid", "-c", "user.name=ci", "add", "-A"], cwd=project)
    run(["git", "-c", "user.email=ci@example.invalid", "-c", "user.name=ci", "commit", "-qm", "clone"], cwd=project)
    dvc = str(BIN / "dvc")

    first = run([dvc, "repro"], cwd=project)
    assert _stages_run(first.stdout) == ["ingest", "pretrain_flow", "train_vfi", "evaluate"]
    assert (project / "dvc.lock").exists()
    assert (project / "data/08_reporting/metrics.json").exists()

    second = run([dvc, "repro"], cwd=project)
    assert _stages_run(second.stdout) == []

    run(["git", "-c", "user.email=ci@example.invalid", "-c", "user.name=ci", "add", "dvc.lock"], cwd=project)
    run(["git", "-c", "user.email=ci@example.invalid", "-c", "user.name=ci", "commit", "-qm", "lock"], cwd=project)
    exp = run([dvc, "exp", "run", "-S", "conf/base/parameters_evaluation.yml:evaluation.limit=3"], cwd=project)
    assert _stages_run(exp.stdout) == ["evaluate"]

    # push / pull through the local default remote, offline
    run([dvc, "push"], cwd=project)
    (project / "data/06_models/vfi.pt").unlink()
    run([dvc, "pull", "data/06_models/vfi.pt"], cwd=project)
    assert (project / "data/06_models/vfi.pt").stat().st_size > 0
