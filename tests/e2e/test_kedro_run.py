"""`kedro run` end to end on tiny settings: what a user looks at afterwards."""
from __future__ import annotations

import json

import pandas as pd

METHODS = {"model", "prior", "repeat", "blend", "classical_flow"}
METRICS = {"psnr", "ssim", "ssim_animeinterp", "roi_psnr", "roi_ssim", "ie"}


def test_report_has_every_method_and_metric(finished_project):
    metrics = json.loads((finished_project / "data/08_reporting/metrics.json").read_text())
    assert set(metrics) == METHODS
    for method, values in metrics.items():
        assert METRICS <= set(values), f"{method} lacks {METRICS - set(values)}"
        assert any(key.startswith("psnr_level_") for key in values)
        assert any(key.startswith("psnr_motion_") for key in values)
        # The transfer check: the family training never saw has its own row, beside the others.
        assert {"psnr_unseen_style", "psnr_seen_style", "psnr_style_watercolor"} <= set(values)
    per_triplet = pd.read_csv(finished_project / "data/08_reporting/per_triplet.csv")
    assert set(per_triplet["method"]) == METHODS
    assert per_triplet.groupby("method").size().nunique() == 1  # every method scored on the same triplets


def test_weights_figures_and_summary_are_written(finished_project):
    reporting = finished_project / "data/08_reporting"
    for name in ("gallery", "psnr_distribution", "training_curves"):
        png = reporting / "figures" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = (reporting / "summary.md").read_text()
    for method in METHODS:
        assert method in summary
    assert "What training added" in summary and "unseen style:" in summary
    for weights in ("flownet.pt", "vfi.pt"):
        assert (finished_project / "data/06_models" / weights).stat().st_size > 10_000
