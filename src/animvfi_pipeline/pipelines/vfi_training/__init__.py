"""VFI training: the triplet store and the pretrained FlowNet -> a VFI checkpoint and its history."""
from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
