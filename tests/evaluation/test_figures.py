"""Report figures render, show what their titles say, and save as PNG."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from animvfi_pipeline.evaluation import baselines, figures, report

from evaluation_fakes import default_store


@pytest.fixture(scope="module")
def store_and_table():
    store = default_store()
    table = report.evaluate_methods(store, {"model": baselines.repeat, "blend": baselines.blend})
    return store, table


def test_examples_are_best_median_worst_by_psnr():
    table = pd.DataFrame({"name": list("abcde"), "method": "model", "psnr": [25.0, math.inf, 10.0, 30.0, 20.0]})
    picks = figures.pick_examples(table, "model")
    assert [(label, name) for label, name, _ in picks] == [("best", "b"), ("median", "a"), ("worst", "c")]
    with pytest.raises(ValueError, match="nope"):
        figures.pick_examples(table, "nope")


def test_gallery_has_a_row_per_example_and_the_six_panels(store_and_table, tmp_path):
    store, table = store_and_table
    fig = figures.gallery_figure(store, table, baselines.repeat, method="model")
    axes = fig.get_axes()
    assert len(axes) == 3 * 6
    assert [ax.get_title() for ax in axes[:6]] == [
        "frame1", "model (t = 0.5)", "ground truth (frame2)", "frame3", "|error| (0 - 0.25)", "flow 1->3 (store)"]
    worst = table[table["method"] == "model"].sort_values("psnr").iloc[0]
    assert worst["name"] in axes[12].get_ylabel() and "worst" in axes[12].get_ylabel()
    # The prediction panel shows what the predictor returned (repeat = frame1).
    f1 = store.frames(int(np.flatnonzero(store.meta["name"] == worst["name"])[0]))[0]
    np.testing.assert_allclose(axes[13].get_images()[0].get_array(), f1 / 255, atol=1e-6)
    out = tmp_path / "gallery.png"
    fig.savefig(out)
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_psnr_distribution_has_one_box_per_method(store_and_table):
    _, table = store_and_table
    fig = figures.psnr_distribution_figure(table)
    ax = fig.get_axes()[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["model", "blend"]
    assert ax.get_ylabel() == "PSNR (dB)"


def test_training_curves_draw_loss_psnr_and_epe_columns():
    flow = pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [3.0, 2.0, 1.5], "val_epe": [4.0, 3.0, 2.5]})
    vfi = pd.DataFrame({"epoch": [1, 2], "train_loss": [0.2, 0.1], "val_loss": [0.25, 0.2], "val_psnr": [25.0, 27.0]})
    fig = figures.training_curves_figure({"flow": flow, "vfi": vfi})
    loss_ax, psnr_ax, epe_ax = fig.get_axes()
    assert {line.get_label() for line in loss_ax.get_lines()} == {"flow: train_loss", "vfi: train_loss", "vfi: val_loss"}
    assert [line.get_label() for line in psnr_ax.get_lines()] == ["vfi: val_psnr"]
    np.testing.assert_allclose(psnr_ax.get_lines()[0].get_ydata(), [25.0, 27.0])
    assert [line.get_label() for line in epe_ax.get_lines()] == ["flow: val_epe"]
    assert loss_ax.get_yscale() == "log"


def test_training_curves_without_history_say_so():
    fig = figures.training_curves_figure({"flow": None, "vfi": pd.DataFrame()})
    assert all(not ax.get_lines() and "no data" in [t.get_text() for t in ax.texts] for ax in fig.get_axes())
