"""data_ingestion: raw ATD-12K folder (real or synthetic) -> HDF5 triplet store -> reports."""
from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from .nodes import plan_ingestion, prepare_raw_dataset, store_metadata, summarize_store


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=prepare_raw_dataset,
                inputs="params:raw_data",
                outputs="atd12k_raw",
                name="prepare_raw_dataset_node",
            ),
            Node(
                func=plan_ingestion,
                inputs=["atd12k_raw", "params:ingestion"],
                outputs="triplet_store",
                name="ingest_triplets_node",
            ),
            Node(
                func=summarize_store,
                inputs="triplet_store",
                outputs=["triplet_metadata", "ingestion_report"],
                name="summarize_store_node",
            ),
            Node(
                func=store_metadata,
                inputs="triplet_store",
                outputs="triplet_metadata_parquet",
                name="store_metadata_parquet_node",
            ),
        ]
    )
