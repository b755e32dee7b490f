"""Score methods triplet by triplet on a TripletStore, summarise, and write a Markdown table.

The per-triplet table has one row per (triplet, method); the summary is a plain
``{method: {metric: value}}`` dict ready for ``metrics.json`` (DVC and MLflow read it as is).
Breakdown keys and every metric are defined in docs/evaluation.md.
"""
from __future__ import annotations

import logging
import math
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from animvfi_pipeline.data.h5store import TripletStore
from animvfi_pipeline.errors import DataError
from animvfi_pipeline.evaluation import metrics
from animvfi_pipeline.evaluation.baselines import Predictor

logger = logging.getLogger(__name__)

# ATD-12K's frame2 sits halfway between frame1 and frame3.
MIDDLE_T = 0.5
# An exact copy has infinite PSNR; averages count it as this many dB so one such triplet
# cannot make a method's mean infinite. The per-triplet table keeps the true inf.
PSNR_CAP_DB = 100.0
LEVEL_NAMES = {0: "easy", 1: "medium", 2: "hard"}
STYLE_GROUPS = ("unseen_style", "seen_style")
METRICS = ("psnr", "ssim", "ssim_animeinterp", "roi_psnr", "roi_ssim", "roi_ssim_animeinterp", "ie", "lpips")
BREAKDOWN_METRICS = ("psnr", "ssim", "ssim_animeinterp", "lpips")
# Published whole-image results on the real ATD-12K test split (SSIM as ssim_animeinterp).
PUBLISHED = {
    "AnimeInterp (Li et al. 2021)": {"psnr": 29.68, "ssim_animeinterp": 0.958},
    "EISAI (Chen & Zwicker 2022)": {"psnr": 29.29, "ssim_animeinterp": 0.9515, "lpips": 0.0349},
}


def east_west(name: str) -> str:
    """``east`` for Japanese studios (``Japan_`` names), ``west`` for ``Disney_``, else ``other``."""
    if name.startswith("Japan_"):
        return "east"
    if name.startswith("Disney_"):
        return "west"
    return "other"


def level_name(level: int) -> str:
    return LEVEL_NAMES.get(int(level), "unknown")


def score(pred: np.ndarray, gt: np.ndarray, roi: tuple[int, int, int, int],
          lpips_fn: Callable[[np.ndarray, np.ndarray], float] | None = None) -> dict[str, float]:
    """Every metric of one prediction against its ground truth (RoI in the images' pixels)."""
    out = {
        "psnr": metrics.psnr(pred, gt),
        "ssim": metrics.ssim(pred, gt),
        "ssim_animeinterp": metrics.ssim_animeinterp(pred, gt),
        "roi_psnr": metrics.psnr_roi(pred, gt, roi),
        "roi_ssim": metrics.ssim_roi(pred, gt, roi),
        "roi_ssim_animeinterp": metrics.ssim_animeinterp_roi(pred, gt, roi),
        "ie": metrics.interpolation_error(pred, gt),
    }
    if lpips_fn is not None:
        out["lpips"] = lpips_fn(pred, gt)
    return out


def evaluate_methods(
    store: TripletStore,
    predictors: Mapping[str, Predictor],
    split: str = "test",
    limit: int | None = None,
    lpips_fn: Callable[[np.ndarray, np.ndarray], float] | None = None,
    unseen_styles: Sequence[str] = (),
) -> pd.DataFrame:
    """Run every predictor on frame1 and frame3 of each triplet of ``split`` and score it
    against frame2 (t = 0.5).

    Returns one row per triplet and method with columns ``name, method, level, motion_type,
    east_west, style, style_group, psnr, ssim, ssim_animeinterp, roi_psnr, roi_ssim,
    roi_ssim_animeinterp, ie`` (and ``lpips`` when ``lpips_fn`` is given). ``style`` is the
    store's style family ("" for real data); ``style_group`` is ``unseen_style`` for the families
    in ``unseen_styles`` (never trained on), ``seen_style`` for the others, "" without a family.
    ``limit`` keeps the first N triplets.
    """
    meta = store.meta
    indices = store.indices(split)
    if limit is not None:
        indices = indices[: int(limit)]
    if len(indices) == 0:
        raise DataError(store.path, f"no triplets in split {split!r} to evaluate")
    rows: list[dict[str, Any]] = []
    for i in tqdm(indices, desc=f"evaluating {split}", unit="triplet", leave=False, disable=None):
        frame1, frame2, frame3 = store.frames(i)
        m = meta.iloc[int(i)]
        roi = (int(m["roi_x"]), int(m["roi_y"]), int(m["roi_w"]), int(m["roi_h"]))
        style = str(m.get("style", ""))
        group = ("unseen_style" if style in set(unseen_styles) else "seen_style") if style else ""
        info = {"level": level_name(m["level"]), "motion_type": m["motion_type"], "east_west": east_west(m["name"]),
                "style": style, "style_group": group}
        for method, predict in predictors.items():
            pred = predict(frame1, frame3, MIDDLE_T)
            rows.append({"name": m["name"], "method": method, **info, **score(pred, frame2, roi, lpips_fn)})
    table = pd.DataFrame(rows)
    logger.info("Evaluated %d %s triplets with %d methods.", len(indices), split, len(predictors))
    return table


def _mean(values: pd.Series, metric: str) -> float:
    values = values.astype(float)
    if metric.endswith("psnr"):
        values = values.clip(upper=PSNR_CAP_DB)
    values = values.dropna()
    return float(values.mean()) if len(values) else math.nan


def summarize(per_triplet: pd.DataFrame) -> dict[str, dict[str, float]]:
    """``{method: {metric: mean}}`` in the order methods first appear.

    Keys: ``n_triplets``; the mean of every metric column (PSNR capped at ``PSNR_CAP_DB``,
    RoI metrics over triplets whose RoI is known); and for ``psnr``, ``ssim``,
    ``ssim_animeinterp`` and ``lpips`` (when present) the breakdowns ``<metric>_level_<easy|medium|hard>``,
    ``<metric>_motion_<type>``, ``<metric>_<east|west|other>``, ``<metric>_style_<family>`` and
    ``<metric>_<seen_style|unseen_style>``, for the groups present.
    Means that cannot be computed (no known RoI, say) are left out rather than written as NaN,
    which strict JSON readers reject.
    """
    summary: dict[str, dict[str, float]] = {}
    for method, rows in per_triplet.groupby("method", sort=False):
        out: dict[str, float] = {"n_triplets": int(len(rows))}
        for metric in METRICS:
            if metric in rows:
                out[metric] = _mean(rows[metric], metric)
        groups = [
            ("level", "level_", [lv for lv in LEVEL_NAMES.values() if lv in set(rows["level"])]),
            ("motion_type", "motion_", sorted(set(rows["motion_type"]) - {"unknown"})),
            ("east_west", "", [r for r in ("east", "west", "other") if r in set(rows["east_west"])]),
        ]
        if "style" in rows:  # tables from before style families have no such columns
            groups += [("style", "style_", sorted(set(rows["style"]) - {""})),
                       ("style_group", "", [g for g in STYLE_GROUPS if g in set(rows["style_group"])])]
        for column, prefix, values in groups:
            for value in values:
                part = rows[rows[column] == value]
                for metric in BREAKDOWN_METRICS:
                    if metric in part:
                        out[f"{metric}_{prefix}{value}"] = _mean(part[metric], metric)
        summary[str(method)] = {k: v for k, v in out.items() if not (isinstance(v, float) and math.isnan(v))}
    return summary


def method_table(summary: Mapping[str, Mapping[str, float]]) -> pd.DataFrame:
    """One row per method with its whole-image and RoI means (the per-method CSV for DVC plots)."""
    columns = ["n_triplets", *METRICS]
    rows = [{"method": method, **{c: values.get(c, math.nan) for c in columns}} for method, values in summary.items()]
    table = pd.DataFrame(rows, columns=["method", *columns])
    return table.dropna(axis=1, how="all")


def _fmt(value: float | None, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _added(summary: Mapping[str, Mapping[str, float]], base: str, title: str, what: str) -> list[str]:
    """A line stating model - ``base`` overall and per style group (nothing if either is missing)."""
    if "model" not in summary or base not in summary:
        return []
    model, other = summary["model"], summary[base]
    cells = []
    for key, label in (("", "all"), ("_unseen_style", "unseen style"), ("_seen_style", "seen styles")):
        if f"psnr{key}" in model and f"psnr{key}" in other:
            cells.append(f"{label}: {model[f'psnr{key}'] - other[f'psnr{key}']:+.2f} dB PSNR, "
                         f"{model[f'ssim{key}'] - other[f'ssim{key}']:+.4f} SSIM")
    return ["", f"**{title}** (model - {base}, {what}): " + "; ".join(cells) + "."]


def _training_added(summary: Mapping[str, Mapping[str, float]]) -> list[str]:
    """What training added over the prior and, for a fine-tuned model, over its starting model."""
    return (_added(summary, "prior", "What training added", "the same network with its learned parts off")
            + _added(summary, "start", "What fine-tuning added", "the model it started from, init_from"))


def markdown_summary(summary: Mapping[str, Mapping[str, float]], split: str = "test", notes: Sequence[str] = ()) -> str:
    """A Markdown report: whole-image and RoI means, then the difficulty, motion and studio
    breakdowns, then the published ATD-12K numbers for reference. ``notes``: sentences on how the
    methods were run, added to the opening paragraph."""
    methods = list(summary)
    digits = {"psnr": 2, "ssim": 4, "ssim_animeinterp": 4, "roi_psnr": 2, "roi_ssim": 4,
              "roi_ssim_animeinterp": 4, "ie": 2, "lpips": 4}
    titles = {"psnr": "PSNR (dB)", "ssim": "SSIM", "ssim_animeinterp": "SSIM (AnimeInterp)",
              "roi_psnr": "RoI PSNR", "roi_ssim": "RoI SSIM", "roi_ssim_animeinterp": "RoI SSIM (AnimeInterp)",
              "ie": "IE", "lpips": "LPIPS"}
    shown = [m for m in METRICS if any(m in summary[k] for k in methods)]
    parts = [
        f"# Evaluation on the {split} split",
        "",
        " ".join(["Frame2 predicted from frame1 and frame3 (t = 0.5). SSIM is the standard Gaussian SSIM "
                  "(data range 1); SSIM (AnimeInterp) reproduces the published protocol (7x7 uniform window, "
                  "data range 2). IE is the RMS error on 0-255. Definitions: docs/evaluation.md.", *notes]),
        "",
        _table(["method", "n", *(titles[m] for m in shown)],
               [[k, str(summary[k].get("n_triplets", "-")), *(_fmt(summary[k].get(m), digits[m]) for m in shown)]
                for k in methods]),
    ]
    parts += _training_added(summary)
    sections = [
        ("By style family (unseen_style: the families training never saw)", "",
         list(STYLE_GROUPS) + sorted({key[len("psnr_"):] for k in methods for key in summary[k]
                                      if key.startswith("psnr_style_")})),
        ("By difficulty (whole image)", "level_", ["easy", "medium", "hard"]),
        ("By motion type", "motion_", sorted({key.split("motion_", 1)[1] for k in methods for key in summary[k]
                                              if key.startswith("psnr_motion_")})),
        ("By studio (east = Japan, west = Disney)", "", ["east", "west", "other"]),
    ]
    for title, prefix, groups in sections:
        groups = [g for g in groups if any(f"psnr_{prefix}{g}" in summary[k] for k in methods)]
        if not groups:
            continue
        header = ["method"] + [f"{g} {label}" for g in groups for label in ("PSNR", "SSIM (AnimeInterp)")]
        rows = [[k] + [_fmt(summary[k].get(f"{metric}_{prefix}{g}"), digits[metric])
                       for g in groups for metric in ("psnr", "ssim_animeinterp")] for k in methods]
        parts += ["", f"## {title}", "", _table(header, rows)]
    parts += [
        "",
        "## Published on the real ATD-12K test split (for reference)",
        "",
        "Only comparable when this report was made on the real test_2k_540p data.",
        "",
        _table(["method", "PSNR (dB)", "SSIM (AnimeInterp)", "LPIPS"],
               [[k, _fmt(v.get("psnr"), 2), _fmt(v.get("ssim_animeinterp"), 4), _fmt(v.get("lpips"), 4)]
                for k, v in PUBLISHED.items()]),
        "",
    ]
    return "\n".join(parts)
