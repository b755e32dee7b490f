"""Wiring only: triplet_store -> pretrain_flow -> flownet_model, flow_training_history."""
from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from .nodes import pretrain_flow


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=pretrain_flow,
                inputs=["triplet_store", "params:flow_model", "params:flow_training"],
                outputs=["flownet_model", "flow_training_history"],
                name="pretrain_flow_node",
            )
        ]
    )
