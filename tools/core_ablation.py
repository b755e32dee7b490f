"""Ablation of the fixed core (nothing learned): DIS preset x intermediate-flow estimate.

    .venv/bin/python tools/core_ablation.py [--store data/02_intermediate/triplets.h5] [--split val] [--every 1]

Scores the prior network (``models.vfi.prior_network``: DIS flow, intermediate flows, backward
warps, t-weighted fusion) for every combination of DIS preset (medium, fine) and intermediate
estimate (linear, splat, both), and the classical baseline at both presets, on one split of the
store at t = 0.5, overall and per style group (seen / unseen families). Nothing is trained, so a
few minutes on 2 CPU cores; the choice of conf/base was made on ``--split val`` and then
confirmed once on test. Writes data/08_reporting/ablation/core_<split>.md (docs/training.md quotes it).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from animvfi_pipeline.data.h5store import TripletStore
from animvfi_pipeline.evaluation import baselines
from animvfi_pipeline.evaluation.metrics import psnr
from animvfi_pipeline.models.flownet import FlowNetConfig
from animvfi_pipeline.models.vfi import INTERMEDIATE, VFIConfig, prior_network

PRESETS = ("medium", "fine")
UNSEEN = ("watercolor",)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", default="data/02_intermediate/triplets.h5")
    ap.add_argument("--split", default="val")
    ap.add_argument("--every", type=int, default=1, help="score every k-th triplet of the split")
    ap.add_argument("--out", default="data/08_reporting/ablation")
    args = ap.parse_args()

    store = TripletStore(args.store)
    idx = store.indices(args.split)[:: args.every]
    unseen = np.array([store.meta.iloc[i]["style"] in UNSEEN for i in idx])
    methods = {}
    for preset in PRESETS:
        for how in INTERMEDIATE:
            flow = FlowNetConfig(init="dis", dis_preset=preset)
            methods[f"prior, DIS {preset}, {how}"] = baselines.model_predictor(
                prior_network(VFIConfig(flow=flow, intermediate=how)))
        methods[f"classical, DIS {preset}"] = baselines.classical_flow_predictor(
            baselines.ClassicalFlowConfig(preset=preset))
    scores = {name: [] for name in methods}
    for n, i in enumerate(idx):
        f1, f2, f3 = store.frames(i)
        for name, predict in methods.items():
            scores[name].append(psnr(predict(f1, f3, 0.5), f2))
        print(f"\r{n + 1}/{len(idx)} triplets", end="", flush=True)
    print()

    lines = [f"Fixed core on the {args.split} split ({len(idx)} triplets, {int(unseen.sum())} in the unseen "
             f"style), PSNR dB at t = 0.5, nothing trained.", "",
             "| method | all | unseen style | seen styles |", "|---|---|---|---|"]
    for name, v in scores.items():
        v = np.asarray(v)
        cells = [v.mean(), v[unseen].mean() if unseen.any() else float("nan"),
                 v[~unseen].mean() if (~unseen).any() else float("nan")]
        lines.append(f"| {name} | " + " | ".join(f"{c:.2f}" for c in cells) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f"core_{args.split}.md.tmp"
    tmp.write_text(text)
    tmp.replace(out / f"core_{args.split}.md")


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
