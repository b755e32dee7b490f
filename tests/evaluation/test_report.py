"""Per-triplet table, summary and Markdown report on triplets whose scores are known."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from animvfi_pipeline.errors import DataError
from animvfi_pipeline.evaluation import baselines, report

from evaluation_fakes import default_store


def test_one_row_per_triplet_and_method_with_its_groups():
    store = default_store()
    table = report.evaluate_methods(store, {"repeat": baselines.repeat, "blend": baselines.blend})
    assert len(table) == 2 * len(store)
    assert list(table["method"][:2]) == ["repeat", "blend"]
    for column in ("name", "method", "level", "motion_type", "east_west", "psnr", "ssim",
                   "ssim_animeinterp", "roi_psnr", "roi_ssim", "roi_ssim_animeinterp", "ie"):
        assert column in table
    first = table.drop_duplicates("name").set_index("name")
    assert first.loc["Japan_v1_0_000010_s1", "east_west"] == "east"
    assert first.loc["Disney_v2_0_000020_s1", "east_west"] == "west"
    assert first.loc["Synth_v0_0_000040_s1", "east_west"] == "other"
    assert list(first["level"]) == ["easy", "hard", "easy", "unknown"]
    # frame2 is exactly the mean of frame1 and frame3 in the fake store.
    assert (table.loc[table["method"] == "blend", "psnr"] > 60).all()
    assert (table.loc[table["method"] == "repeat", "psnr"] < 20).all()


def _a_tenth_off(img0, img1, t):
    """The fake store's frame2 (mean of frame1 and frame3) moved by 0.1 towards mid-grey: every
    value is off by exactly 0.1, so PSNR = 10 log10(1 / 0.01) = 20 dB and IE = 25.5."""
    gt = (img0.astype(np.float32) + img1.astype(np.float32)) / (2 * 255)
    return np.where(gt < 0.5, gt + 0.1, gt - 0.1).astype(np.float32)


def test_scores_match_a_known_error():
    table = report.evaluate_methods(default_store(), {"off": _a_tenth_off}, limit=2)
    assert len(table) == 2
    assert table["psnr"].to_numpy() == pytest.approx([20.0, 20.0], abs=1e-4)
    assert table["roi_psnr"].to_numpy() == pytest.approx([20.0, 20.0], abs=1e-4)
    assert table["ie"].to_numpy() == pytest.approx([25.5, 25.5], abs=1e-3)
    assert (table["ssim"] < 1).all() and (table["ssim_animeinterp"] > table["ssim"]).all()


def test_missing_split_is_a_data_error_naming_the_store():
    with pytest.raises(DataError, match="memory://fake-store.*val"):
        report.evaluate_methods(default_store(), {"repeat": baselines.repeat}, split="val")


def _table() -> pd.DataFrame:
    rows = []
    for method, base in (("model", 30.0), ("blend", 20.0)):
        rows += [
            dict(name="Japan_a", method=method, level="easy", motion_type="translation", east_west="east",
                 psnr=base, ssim=0.9, ssim_animeinterp=0.95, roi_psnr=base - 2, roi_ssim=0.8,
                 roi_ssim_animeinterp=0.85, ie=5.0),
            dict(name="Disney_b", method=method, level="hard", motion_type="rotation", east_west="west",
                 psnr=base - 10, ssim=0.7, ssim_animeinterp=0.75, roi_psnr=math.nan, roi_ssim=math.nan,
                 roi_ssim_animeinterp=math.nan, ie=15.0),
            dict(name="Japan_c", method=method, level="easy", motion_type="unknown", east_west="east",
                 psnr=math.inf, ssim=1.0, ssim_animeinterp=1.0, roi_psnr=math.inf, roi_ssim=1.0,
                 roi_ssim_animeinterp=1.0, ie=0.0),
        ]
    return pd.DataFrame(rows)


def test_summary_means_breakdowns_and_psnr_cap():
    summary = report.summarize(_table())
    assert list(summary) == ["model", "blend"]
    model = summary["model"]
    assert model["n_triplets"] == 3
    cap = report.PSNR_CAP_DB
    assert model["psnr"] == pytest.approx((30 + 20 + cap) / 3)
    assert model["roi_psnr"] == pytest.approx((28 + cap) / 2)  # the unknown RoI is left out
    assert model["ie"] == pytest.approx(20 / 3)
    assert model["psnr_level_easy"] == pytest.approx((30 + cap) / 2)
    assert model["psnr_level_hard"] == pytest.approx(20)
    assert "psnr_level_medium" not in model  # no medium triplet
    assert model["ssim_animeinterp_motion_rotation"] == pytest.approx(0.75)
    assert "psnr_motion_unknown" not in model
    assert model["psnr_east"] == pytest.approx((30 + cap) / 2)
    assert model["ssim_west"] == pytest.approx(0.7)
    assert summary["blend"]["psnr_west"] == pytest.approx(10)
    json.loads(json.dumps(summary, allow_nan=False))  # strict JSON: no NaN or inf


def test_markdown_summary_lists_every_method_and_the_published_numbers():
    text = report.markdown_summary(report.summarize(_table()))
    assert "| model | 3 | 50.00 |" in text
    assert "| blend | 3 |" in text
    assert "By difficulty" in text and "hard PSNR" in text
    assert "By studio" in text and "rotation PSNR" in text
    assert "29.68" in text and "0.9580" in text and "0.0349" in text


def test_notes_on_how_methods_ran_end_the_opening_paragraph():
    text = report.markdown_summary(report.summarize(_table()), notes=["Both ran twice."])
    opening = text.split("\n\n")[1]
    assert opening.startswith("Frame2 predicted from frame1 and frame3")
    assert opening.endswith("Definitions: docs/evaluation.md. Both ran twice.")


def test_method_table_has_one_row_per_method():
    table = report.method_table(report.summarize(_table()))
    assert list(table["method"]) == ["model", "blend"]
    assert "lpips" not in table  # never computed
    assert table.set_index("method").loc["blend", "ie"] == pytest.approx(20 / 3)


def test_lpips_is_summarised_and_broken_down_when_present():
    table = _table()
    table["lpips"] = [0.1, 0.3, 0.0, 0.2, 0.4, 0.0]
    model = report.summarize(table)["model"]
    assert model["lpips"] == pytest.approx(0.4 / 3)
    assert model["lpips_west"] == pytest.approx(0.3)
    assert model["lpips_east"] == pytest.approx(0.05)
    assert "LPIPS" in report.markdown_summary(report.summarize(table))
