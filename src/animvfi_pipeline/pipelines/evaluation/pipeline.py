"""Wiring only: triplet_store + vfi_model (+ training histories) -> evaluate -> 08_reporting;
triplet_store + vfi_model -> promotion_gate (the registry hook acts on it)."""
from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from .nodes import evaluate, promotion_gate


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=evaluate,
                inputs=["triplet_store", "vfi_model", "flow_training_history", "vfi_training_history",
                        "params:evaluation"],
                outputs=["evaluation_metrics", "per_triplet_metrics", "psnr_by_method", "evaluation_summary",
                         "evaluation_gallery", "psnr_distribution", "training_curves"],
                name="evaluate_node",
            ),
            Node(
                func=promotion_gate,
                inputs=["triplet_store", "vfi_model", "params:promotion"],
                outputs="promotion_gate",
                name="promotion_gate_node",
            ),
        ]
    )
