"""Flow pretraining: the triplet store -> a FlowNet checkpoint and its training history."""
from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
