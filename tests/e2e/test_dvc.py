"""DVC from a fresh clone: `dvc repro` runs everything as one grouped MLflow pipeline run, a second
does nothing, two `dvc exp run -S` compare in `dvc exp show`, `dvc metrics diff` and `dvc plots diff`,
and data and weights round-trip through the remote."""
from __future__ import annotations

import json
import re
from collections import Counter

from mlflow.tracking import MlflowClient

from project_copy import BIN, copy_project, git_commit_all, run, shrink_params

LIMIT = "conf/base/parameters_evaluation.yml:evaluation.limit"


def _stages_run(output: str) -> list[str]:
    return re.findall(r"Running stage '([^']+)'", output)


def _runs(project, filter_string: str) -> list:
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("animvfi_pipeline")
    return client.search_runs([experiment.experiment_id], filter_string=filter_string)


def test_repro_noop_and_exp_run(tmp_path):
    project = copy_project(tmp_path / "clone")
    shrink_params(project)
    git_commit_all(project, "clone")
    dvc = str(BIN / "dvc")

    first = run([dvc, "repro"], cwd=project)
    assert _stages_run(first.stdout) == ["ingest", "pretrain_flow", "train_vfi", "evaluate"]
    assert (project / "dvc.lock").exists()
    assert (project / "data/08_reporting/metrics.json").exists()

    # One pipeline run in MLflow: the four stage runs nested under one parent, and the evaluate
    # stage's metrics on the model the train_vfi stage logged.
    (parent,) = _runs(project, "tags.`animvfi.role` = 'pipeline'")
    stages = _runs(project, f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert sorted(r.data.tags["dvc.stage"] for r in stages) == ["evaluate", "ingest", "pretrain_flow", "train_vfi"]
    assert {r.data.tags["animvfi.pipeline_run_id"] for r in stages} == {parent.data.tags["animvfi.pipeline_run_id"]}
    by_stage = {r.data.tags["dvc.stage"]: r for r in stages}
    (model_output,) = by_stage["train_vfi"].outputs.model_outputs
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    model = client.get_logged_model(model_output.model_id)
    assert {m.run_id for m in model.metrics if m.key == "eval/model/psnr"} == {by_stage["evaluate"].info.run_id}

    second = run([dvc, "repro"], cwd=project)
    assert _stages_run(second.stdout) == []

    git_commit_all(project, "lock")
    for name, limit in (("limit-3", 3), ("limit-2", 2)):
        exp = run([dvc, "exp", "run", "-n", name, "-S", f"{LIMIT}={limit}"], cwd=project)
        assert _stages_run(exp.stdout) == ["evaluate"]
        (exp_run,) = _runs(project, f"tags.`dvc.exp_name` = '{name}' and tags.`dvc.stage` = 'evaluate'")
        assert exp_run.data.tags["mlflow.parentRunId"]

    shown = json.loads(run([dvc, "exp", "show", "--json"], cwd=project).stdout)
    exps = {e["name"]: e for baseline in shown for e in (baseline.get("experiments") or [])
            for e in [e["revs"][0]]}
    assert {"limit-3", "limit-2"} <= set(exps)
    for name, limit in (("limit-3", 3), ("limit-2", 2)):
        data = exps[name]["data"]
        assert data["params"]["conf/base/parameters_evaluation.yml"]["data"]["evaluation"]["limit"] == limit
        assert data["metrics"]["data/08_reporting/metrics.json"]["data"]["model"]["n_triplets"] == limit

    # The workspace holds the last experiment: metrics diff against the committed run shows the change.
    diff = json.loads(run([dvc, "metrics", "diff", "--json"], cwd=project).stdout)
    n = diff["data/08_reporting/metrics.json"]["model.n_triplets"]
    assert n["new"] == 2 and n["old"] > 2

    # Both experiments in one plot: per-triplet rows of 3 and of 2 test triplets, for every method.
    plots = json.loads(run([dvc, "plots", "diff", "limit-3", "limit-2", "--json"], cwd=project).stdout)["data"]
    (per_triplet,) = plots["data/08_reporting/per_triplet.csv"]
    assert per_triplet["revisions"] == ["limit-3", "limit-2"]
    rows = Counter(v["rev"] for v in per_triplet["content"]["data"]["values"])
    assert rows["limit-3"] * 2 == rows["limit-2"] * 3 > 0

    # push / pull through the local default remote, offline
    run([dvc, "push"], cwd=project)
    (project / "data/06_models/vfi.pt").unlink()
    run([dvc, "pull", "data/06_models/vfi.pt"], cwd=project)
    assert (project / "data/06_models/vfi.pt").stat().st_size > 0
