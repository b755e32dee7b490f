"""`kedro viz build` works offline and its graph holds the four pipelines and their nodes."""
from __future__ import annotations

import json

from project_copy import BIN, copy_project, run

PIPELINE_NODES = {
    "data_ingestion": {"prepare_raw_dataset_node", "ingest_triplets_node"},
    "flow_pretraining": {"pretrain_flow_node"},
    "vfi_training": {"train_vfi_node"},
    "evaluation": {"evaluate_node", "promotion_gate_node"},
}


def test_viz_build_has_pipelines_nodes_and_layers(tmp_path):
    project = copy_project(tmp_path / "project")
    run([str(BIN / "kedro"), "viz", "build"], cwd=project, timeout=300)
    graph = json.loads((project / "build" / "api" / "main").read_text())
    assert PIPELINE_NODES.keys() <= {p["id"] for p in graph["pipelines"]}
    tasks = {n["name"]: n for n in graph["nodes"] if n["type"] == "task"}
    for pipeline, nodes in PIPELINE_NODES.items():
        for node in nodes:
            assert pipeline in tasks[node]["pipelines"], f"{node} not in {pipeline}"
    assert graph["layers"] == ["raw", "intermediate", "models", "reporting"]
