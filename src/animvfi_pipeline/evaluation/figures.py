"""Report figures: example gallery, PSNR distribution per method, training curves.

Figures are built on ``matplotlib.figure.Figure`` directly (rendered by Agg when saved), so no
pyplot state or display backend is involved and nothing leaks between pipeline runs.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from animvfi_pipeline.data.flow import flow_to_color
from animvfi_pipeline.data.h5store import TripletStore
from animvfi_pipeline.evaluation.baselines import Predictor
from animvfi_pipeline.evaluation.report import MIDDLE_T, PSNR_CAP_DB

# Absolute error (mean over RGB, images in [0, 1]) shown at full colour in the error maps;
# one fixed scale makes rows and runs comparable.
ERROR_MAP_MAX = 0.25


def pick_examples(per_triplet: pd.DataFrame, method: str) -> list[tuple[str, str, float]]:
    """(label, triplet name, PSNR) of the best, median and worst triplet of ``method`` by PSNR."""
    rows = per_triplet[per_triplet["method"] == method].sort_values("psnr", ascending=False, kind="stable")
    if rows.empty:
        raise ValueError(f"method {method!r} is not in the per-triplet table")
    picks = {"best": 0, "median": (len(rows) - 1) // 2, "worst": len(rows) - 1}
    return [(label, str(rows.iloc[k]["name"]), float(rows.iloc[k]["psnr"])) for label, k in picks.items()]


def gallery_figure(store: TripletStore, per_triplet: pd.DataFrame, predictor: Predictor, method: str = "model") -> Figure:
    """Best, median and worst triplet of ``method`` by PSNR, one row each:
    frame1 | prediction | ground truth | frame3 | error map | flow 1->3 of the store (colour wheel)."""
    examples = pick_examples(per_triplet, method)
    index_of = {name: i for i, name in enumerate(store.meta["name"])}
    titles = ["frame1", f"{method} (t = {MIDDLE_T:g})", "ground truth (frame2)", "frame3",
              f"|error| (0 - {ERROR_MAP_MAX:g})", "flow 1->3 (store)"]
    aspect = store.height / max(store.width, 1)
    fig = Figure(figsize=(2.6 * len(titles), 2.6 * aspect * len(examples) + 0.8), layout="constrained")
    axes = fig.subplots(len(examples), len(titles), squeeze=False)
    for row, (label, name, value) in enumerate(examples):
        i = index_of[name]
        frame1, frame2, frame3 = store.frames(i)
        pred = predictor(frame1, frame3, MIDDLE_T)
        error = np.abs(pred.astype(np.float32) - frame2.astype(np.float32) / 255.0).mean(axis=2)
        if store.has_flows:
            flow_panel = flow_to_color(store.flows(i)[0])
        else:
            flow_panel = np.full_like(frame1, 255)
        panels = [frame1, pred, frame2, frame3, error, flow_panel]
        for col, (ax, img) in enumerate(zip(axes[row], panels)):
            if img.ndim == 2:
                ax.imshow(img, cmap="magma", vmin=0.0, vmax=ERROR_MAP_MAX, interpolation="nearest")
            else:
                ax.imshow(img, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(titles[col], fontsize=9)
        axes[row][0].set_ylabel(f"{label}: {value:.2f} dB\n{name}", fontsize=8)
    fig.suptitle(f"{method}: best, median and worst triplets by PSNR", fontsize=11)
    return fig


def psnr_distribution_figure(per_triplet: pd.DataFrame) -> Figure:
    """Box plot of per-triplet PSNR for every method (means marked), in table order."""
    methods = list(dict.fromkeys(per_triplet["method"]))
    data = [per_triplet.loc[per_triplet["method"] == m, "psnr"].astype(float).clip(upper=PSNR_CAP_DB).dropna().to_numpy()
            for m in methods]
    fig = Figure(figsize=(1.6 * len(methods) + 2.5, 4.0), layout="constrained")
    ax = fig.subplots()
    ax.boxplot(data, showmeans=True)
    ax.set_xticks(range(1, len(methods) + 1), methods)
    ax.set_ylabel("PSNR (dB)")
    ax.set_title(f"Per-triplet PSNR ({len(data[0]) if data else 0} triplets; triangle = mean)")
    ax.grid(axis="y", alpha=0.3)
    return fig


def _history_x(history: pd.DataFrame) -> np.ndarray:
    return history["epoch"].to_numpy() if "epoch" in history else np.arange(1, len(history) + 1)


def training_curves_figure(histories: Mapping[str, pd.DataFrame | None]) -> Figure:
    """Loss, validation PSNR and validation EPE per epoch for each training stage.

    ``histories`` maps a stage name (``flow``, ``vfi``) to its history table, one row per epoch
    with an ``epoch`` column; every column whose name holds ``loss``, ``psnr`` or ``epe`` is drawn
    in the matching panel. Missing or empty histories are skipped.
    """
    panels = [("loss", "loss"), ("psnr", "validation PSNR (dB)"), ("epe", "validation EPE (px)")]
    fig = Figure(figsize=(13.0, 3.8), layout="constrained")
    axes = fig.subplots(1, len(panels))
    for ax, (key, title) in zip(axes, panels):
        drawn = False
        for stage, history in histories.items():
            if history is None or len(history) == 0:
                continue
            for column in history.columns:
                if key in column.lower() and pd.api.types.is_numeric_dtype(history[column]):
                    ax.plot(_history_x(history), history[column].to_numpy(dtype=float), marker="o",
                            markersize=3, label=f"{stage}: {column}")
                    drawn = True
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if drawn:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="grey")
    if _all_positive(axes[0]):
        axes[0].set_yscale("log")  # losses fall over decades; a log axis keeps late epochs readable
    fig.suptitle("Training curves", fontsize=11)
    return fig


def _all_positive(ax) -> bool:
    ys = [np.asarray(line.get_ydata(), dtype=float) for line in ax.get_lines()]
    values = np.concatenate(ys) if ys else np.array([])
    values = values[np.isfinite(values)]
    return bool(values.size) and bool((values > 0).all())
