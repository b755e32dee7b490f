"""Wiring only: triplet_store + flownet_model -> train_vfi -> vfi_model, vfi_training_history."""
from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from .nodes import train_vfi


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=train_vfi,
                inputs=["triplet_store", "flownet_model", "params:vfi_model", "params:vfi_training"],
                outputs=["vfi_model", "vfi_training_history"],
                name="train_vfi_node",
            )
        ]
    )
