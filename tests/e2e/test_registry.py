"""After `kedro run`: the model is a registered version, gated against its prior (and the champion
once there is one), with the numbers; the run carries its lineage. A second run with a worse setting
registers a new version without taking the champion alias."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from animvfi_pipeline.data.h5store import TripletStore
from animvfi_pipeline.tracking.lineage import file_md5

from project_copy import BIN, run

NAME, ALIAS = "animvfi-vfi", "champion"


def _client(project: Path) -> MlflowClient:
    uri = f"sqlite:///{project / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _champion(client: MlflowClient) -> str | None:
    try:
        return str(client.get_model_version_by_alias(NAME, ALIAS).version)
    except MlflowException:
        return None


def _runs(client: MlflowClient, **tags) -> list:
    experiment = client.get_experiment_by_name("animvfi_pipeline")
    where = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items()) or None
    return client.search_runs([experiment.experiment_id], filter_string=where or "", order_by=["start_time ASC"])


def _gate_is_consistent(tags: dict[str, str]) -> bool:
    """The decision follows from the recorded numbers (min_gain 0)."""
    new, prior = float(tags["gate.new_psnr"]), float(tags["gate.prior_psnr"])
    champion = None if tags["gate.champion_psnr"] == "none" else float(tags["gate.champion_psnr"])
    wins = new > prior and (champion is None or new > champion)
    return (tags["gate.decision"] == "promoted") == wins


def test_first_run_registers_version_1_gated_against_its_prior(finished_project):
    client = _client(finished_project)
    version = client.get_model_version(NAME, "1")
    tags = version.tags
    assert tags["gate.champion_psnr"] == "none" and tags["gate.champion_version"] == "none"  # empty registry
    assert float(tags["gate.new_psnr"]) > 10 and float(tags["gate.prior_psnr"]) > 10
    assert _gate_is_consistent(tags)
    assert _champion(client) == ("1" if tags["gate.decision"] == "promoted" else None)
    gate = json.loads((finished_project / "data/08_reporting/promotion_gate.json").read_text())
    assert f"{gate['new']:.4f}" == tags["gate.new_psnr"] and gate["split"] == "val"

    (run,) = _runs(client)
    assert run.info.run_id == version.run_id and run.data.tags["registry.version"] == "1"
    assert run.data.tags["gate.decision"] == tags["gate.decision"]

    # The model page shows the evaluation: metrics.json logged against the LoggedModel.
    model = client.get_logged_model(version.source.removeprefix("models:/"))
    model_psnr = {m.key: m.value for m in model.metrics}["eval/model/psnr"]
    metrics = json.loads((finished_project / "data/08_reporting/metrics.json").read_text())
    assert model_psnr == pytest.approx(metrics["model"]["psnr"])


def test_run_has_lineage_a_name_and_its_dataset(finished_project):
    (mlflow_run,) = _runs(_client(finished_project))
    tags = mlflow_run.data.tags
    commit = run(["git", "rev-parse", "HEAD"], cwd=finished_project).stdout.strip()
    assert tags["git.commit"] == commit and tags["git.dirty"] == "false"
    assert tags["kedro.env"] == "local"
    # The name shows what the project's conf asked for (env, backbone, flow init, commit).
    vfi = yaml.safe_load((finished_project / "conf/base/parameters_vfi_training.yml").read_text())["vfi_model"]
    flow = yaml.safe_load((finished_project / "conf/base/parameters_flow_pretraining.yml").read_text())["flow_model"]
    assert mlflow_run.info.run_name == f"local {vfi['backbone']} flow-{flow['init']} {commit[:7]}"
    assert tags["animvfi.pid"].isdigit() and mlflow_run.info.status == "FINISHED"

    store_path = finished_project / "data/02_intermediate/triplets.h5"
    (dataset_input,) = mlflow_run.inputs.dataset_inputs
    dataset = dataset_input.dataset
    assert dataset.name == "triplet_store" and dataset.digest == file_md5(store_path)
    assert str(store_path) in dataset.source
    store = TripletStore(store_path)
    counts = {f"{split}_triplets": len(store.indices(split)) for split in ("train", "val", "test")}
    assert json.loads(dataset.profile) == {"triplets": sum(counts.values()), **counts}


def test_champion_moves_only_to_a_version_that_beats_it(finished_project, tmp_path):
    project = tmp_path / "project"
    shutil.copytree(finished_project, project, symlinks=True)
    client = _client(project)
    kedro = str(BIN / "kedro")

    # Stage by stage, as `dvc repro` runs it: evaluating the same vfi.pt again finds the LoggedModel
    # the training run logged (by its weights) and registers it as version 2. A tolerance of 5 dB
    # lets even this 3-step model past its prior, so version 2 takes the alias.
    run([kedro, "run", "--pipelines=evaluation", "--params=promotion.min_gain=-5"], cwd=project)
    v1, v2 = client.get_model_version(NAME, "1"), client.get_model_version(NAME, "2")
    assert v2.source == v1.source  # the same LoggedModel
    assert v2.tags["gate.decision"] == "promoted" and _champion(client) == "2"
    # The evaluation-only run logged its metrics against the model the first run trained.
    (evaluation_run,) = _runs(client, **{"registry.version": "2"})
    assert evaluation_run.data.tags["kedro.pipeline"] == "evaluation"
    model = client.get_logged_model(v2.source.removeprefix("models:/"))
    assert model.source_run_id == v1.run_id
    assert {m.run_id for m in model.metrics if m.key == "eval/model/psnr"} == {v1.run_id, evaluation_run.info.run_id}

    # A worse setting (a learning rate that wrecks the weights; another seed, so the weights differ
    # even if training falls back to its starting point): version 3 is registered, scored against
    # the champion, and the alias stays where it was.
    run([kedro, "run", "--pipelines=vfi_training,evaluation",
         "--params=vfi_training.loop.lr=5.0,vfi_training.loop.seed=1"], cwd=project)
    v3 = client.get_model_version(NAME, "3")
    assert v3.source != v2.source
    assert v3.tags["gate.champion_version"] == "2" and v3.tags["gate.champion_psnr"] != "none"
    assert _gate_is_consistent(v3.tags)
    assert v3.tags["gate.decision"] == "withheld" and _champion(client) == "2"
