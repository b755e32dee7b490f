"""Where the prior's error comes from, and how much each learned part could win at best.

    .venv/bin/python tools/diagnose_prior.py [--store data/02_intermediate/triplets.h5] [--every 2]

On the test split of a store with exact flow (the embedded synthetic data), for the prior of
conf/base before the fixed core changed (DIS medium, linear intermediate flows, backward warps,
t-weighted fusion; docs/training.md "The fixed core" measures what replaced it), prints:

- the share of its squared error on static pixels, inside moving regions, and within 3 px of a
  motion boundary (from the exact flow);
- PSNR of the classical interpolator (forward-splatted flows, consistency-weighted fusion) with
  DIS flow and with the exact flow: the room a better flow would leave;
- PSNR of the prior's linear intermediate flows fed with the exact flow;
- PSNR of an oracle fusion mask that picks, per pixel and per 8x8 block, the best of warp 0,
  warp 1 and their mean: the most a learned fusion mask could win.

The numbers are what docs/training.md quotes; the store must come from data_ingestion.
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch
import torch.nn.functional as F

from animvfi_pipeline.data.h5store import TripletStore
from animvfi_pipeline.evaluation import baselines
from animvfi_pipeline.models.flownet import FlowNetConfig
from animvfi_pipeline.models.vfi import VFIConfig, fuse, intermediate_flows, prior_network
from animvfi_pipeline.models.warp import warp


def _t(a: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 or (2, H, W) float -> (1, C, H, W) float32 (images in [0, 1])."""
    if a.dtype == np.uint8:
        return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))[None].float() / 255
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None]


def _psnr(mse: float) -> float:
    return float(-10 * np.log10(max(mse, 1e-12)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", default="data/02_intermediate/triplets.h5")
    ap.add_argument("--every", type=int, default=2, help="score every k-th test triplet")
    args = ap.parse_args()
    torch.set_num_threads(1)
    store = TripletStore(args.store)
    prior = prior_network(VFIConfig(flow=FlowNetConfig(init="dis", dis_preset="medium")))
    half = torch.tensor([0.5])
    share = {"static": 0.0, "moving": 0.0, "boundary": 0.0}
    scores: dict[str, list[float]] = {k: [] for k in (
        "prior", "classical_dis", "classical_exact_flow", "linear_exact_flow", "oracle_mask_8x8", "oracle_mask_pixel")}
    for i in store.indices("test")[:: args.every]:
        f1, f2, f3 = store.frames(i)
        flows = store.flows(i).astype(np.float32)
        i0, gt, i1 = _t(f1), _t(f2), _t(f3)
        with torch.no_grad():
            out = prior(i0, i1, 0.5)
            f01, f10 = _t(flows[0]), _t(flows[1])
            ft0, ft1 = intermediate_flows(f01, f10, half)
            linear_exact = fuse(torch.full_like(i0[:, :1], 0.5), warp(i0, ft0), warp(i1, ft1), half)
        err = ((out["pred"] - gt) ** 2).mean(1, keepdim=True)
        moving = torch.from_numpy((np.hypot(*flows[0]) > 0.5) | (np.hypot(*flows[1]) > 0.5)).float()[None, None]
        edge = (F.max_pool2d(moving, 7, 1, 3) + F.max_pool2d(-moving, 7, 1, 3)) > 0  # dilated minus eroded
        share["boundary"] += float(err[edge].sum())
        share["moving"] += float(err[(moving > 0) & ~edge].sum())
        share["static"] += float(err[(moving == 0) & ~edge].sum())
        per_candidate = torch.cat([((c - gt) ** 2).mean(1, keepdim=True)
                                   for c in (out["warped0"], out["warped1"], out["pred"])], dim=1)
        gt_np = f2.astype(np.float32) / 255
        scores["prior"].append(_psnr(float(err.mean())))
        scores["classical_dis"].append(_psnr(float(((baselines.classical_flow(f1, f3, 0.5) - gt_np) ** 2).mean())))
        scores["classical_exact_flow"].append(_psnr(float(((baselines.interpolate_with_flow(
            f1, f3, flows[0], flows[1], 0.5) - gt_np) ** 2).mean())))
        scores["linear_exact_flow"].append(_psnr(float(((linear_exact - gt) ** 2).mean())))
        scores["oracle_mask_pixel"].append(_psnr(float(per_candidate.min(1).values.mean())))
        scores["oracle_mask_8x8"].append(_psnr(float(F.avg_pool2d(per_candidate, 8).min(1).values.mean())))
    total = sum(share.values())
    result = {"n_triplets": len(scores["prior"]),
              "error_share": {k: round(v / total, 3) for k, v in share.items()},
              "psnr": {k: round(float(np.mean(v)), 2) for k, v in scores.items()}}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
