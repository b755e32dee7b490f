"""Evaluation: the trained model beside the repeat / blend / classical-flow baselines -> report."""
from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
