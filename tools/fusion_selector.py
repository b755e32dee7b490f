"""Experiment: can a learned per-pixel choice among the prior's four warps beat the prior?

    .venv/bin/python tools/fusion_selector.py [--store data/02_intermediate/triplets.h5]
        [--seconds 300] [--lr 5e-4] [--inputs all|cues] [--seed 0]
    .venv/bin/python tools/fusion_selector.py --oracles [--split val]

The fixed core (``intermediate: both``) warps frame 0 and frame 1 each along two estimates of the
flow from t (linear and splatted) and takes the t-weighted mean of the four warps. This trains a
small U-Net (1/2 to 1/8 resolution, zero-initialised head) that outputs four logits per pixel;
the prediction is the softmax-weighted sum of the four warps, with the t weights as a prior, so
it starts exactly at the prior and can only choose among warps (no new colours, so nothing to
speckle a static texture with). The flow is the store's DIS prior, frozen.

``--inputs all`` feeds the frames and the warps with the cues; ``--inputs cues`` only
style-free cues (warp disagreements, forward-backward consistency carried to t, motion
magnitudes, t), on the idea that colours are what does not transfer to an unseen style.

Trains on random 128x128 crops of the train split (all stored times) for ``--seconds`` of wall
clock; scores the validation split every ``--eval-every`` steps and the validation and test
splits at the end (whole frames, t = 0.5), as gain over the prior overall and for the unseen
(watercolor) and seen styles. docs/training.md quotes the result; nothing here feeds the pipeline.

``--oracles`` trains nothing: it scores choices made with the target in hand (per pixel and per
8x8 block), the most any learned choice could win, and two fixed rules.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader

from animvfi_pipeline.data.h5store import TripletStore
from animvfi_pipeline.data.torch_dataset import TripletDataset, to_float
from animvfi_pipeline.models.fusion import WarpSelector, select_fusion
from animvfi_pipeline.models.splat import fb_consistency, splatted_flows
from animvfi_pipeline.models.vfi import intermediate_flows
from animvfi_pipeline.models.warp import warp

UNSEEN = ("watercolor",)


def candidate_warps(img0, img1, prior, t):
    """The prior's four warps (linear 0, splat 0, linear 1, splat 1) and the cues beside them."""
    f01, f10 = prior[:, :2], prior[:, 2:]
    l0, l1 = intermediate_flows(f01, f10, t)
    s0, s1 = splatted_flows(f01, f10, t)
    warps = [warp(img0, l0), warp(img0, s0), warp(img1, l1), warp(img1, s1)]
    vis0, vis1 = warp(fb_consistency(f01, f10), s0), warp(fb_consistency(f10, f01), s1)

    def diff(a, b):
        return (a - b).abs().mean(1, keepdim=True)

    def magnitude(f):
        return torch.log1p(f.pow(2).sum(1, keepdim=True).add(1e-6).sqrt())

    b, _, h, w = img0.shape
    cues = [t.view(-1, 1, 1, 1).expand(b, 1, h, w), vis0, vis1, diff(warps[0], warps[2]),
            diff(warps[1], warps[3]), diff(warps[0], warps[1]), diff(warps[2], warps[3]),
            magnitude(s0), magnitude(s1)]
    return warps, cues


class Selector(nn.Module):
    """models.fusion.WarpSelector on these cues (and, with ``with_images``, the frames and warps)."""

    def __init__(self, with_images: bool, width: int = 24):
        super().__init__()
        self.with_images = with_images
        self.net = WarpSelector(2, width, in_channels=(18 if with_images else 0) + 9)

    def forward(self, img0, img1, prior, t):
        warps, cues = candidate_warps(img0, img1, prior, t)
        logits = self.net(torch.cat(([img0, img1, *warps] if self.with_images else []) + cues, 1))
        pred = select_fusion(logits, warps[:2], warps[2:], torch.full_like(t, 0.5).view(-1, 1, 1, 1), t)
        tt = t.view(-1, 1, 1, 1)
        prior_pred = ((1 - tt) * (warps[0] + warps[1]) + tt * (warps[2] + warps[3])) / 2
        return pred, prior_pred


def score(model, dataset, unseen):
    """Mean PSNR gain over the prior (all / unseen / seen) and the model's mean PSNR."""
    model.eval()
    gains, psnrs = [], []
    with torch.no_grad():
        for s in DataLoader(dataset, batch_size=4):
            s = to_float(s)
            pred, prior = model(s["img0"], s["img1"], s["prior"], s["t"])
            mse = [((p.clamp(0, 1) - s["target"]) ** 2).mean((1, 2, 3)) for p in (pred, prior)]
            psnr_model, psnr_prior = (10 * torch.log10(1 / m) for m in mse)
            gains += (psnr_model - psnr_prior).tolist()
            psnrs += psnr_model.tolist()
    model.train()
    g = np.asarray(gains)
    return {"model": float(np.mean(psnrs)), "gain": float(g.mean()), "gain_unseen": float(g[unseen].mean()),
            "gain_seen": float(g[~unseen].mean())}


def _pick(options: torch.Tensor, err: torch.Tensor, block: int) -> torch.Tensor:
    """Per pixel (block 1) or per block, the option (B, K, 3, H, W) with the lowest error (B, K, H, W)."""
    if block > 1:
        err = F.interpolate(F.avg_pool2d(err, block, ceil_mode=True), scale_factor=block, mode="nearest")
        err = err[..., :options.shape[-2], :options.shape[-1]]
    idx = err.argmin(1)[:, None, None].expand(-1, 1, 3, -1, -1)
    return torch.gather(options, 1, idx).squeeze(1)


@torch.no_grad()
def oracles(dataset) -> dict[str, float]:
    """Mean PSNR of the prior, of target-aware (oracle) choices and of two fixed rules."""
    psnrs: dict[str, list[float]] = {}
    for s in DataLoader(dataset, batch_size=4):
        s = to_float(s)
        t, y = s["t"].view(-1, 1, 1, 1), s["target"]
        warps, cues = candidate_warps(s["img0"], s["img1"], s["prior"], s["t"])
        side0, side1 = (warps[0] + warps[1]) / 2, (warps[2] + warps[3]) / 2
        prior = (1 - t) * side0 + t * side1
        linear, splat = (1 - t) * warps[0] + t * warps[2], (1 - t) * warps[1] + t * warps[3]

        def err(options):
            return ((options - y[:, None]) ** 2).mean(2)

        four, pairs, sides = torch.stack(warps, 1), torch.stack((linear, splat), 1), torch.stack((side0, side1, prior), 1)
        vis0, vis1 = cues[1], cues[2]
        w0, w1 = (1 - t) * (vis0 + 1e-3), t * (vis1 + 1e-3)
        agree_lin, agree_splat = (torch.exp(-F.avg_pool2d(c, 5, 1, 2) / 0.02) + 1e-6 for c in (cues[3], cues[4]))
        outs = {
            "prior": prior,
            "oracle: best of the 4 warps per pixel": _pick(four, err(four), 1),
            "oracle: best of the 4 warps per 8x8 block": _pick(four, err(four), 8),
            "oracle: linear or splatted pair per 8x8 block": _pick(pairs, err(pairs), 8),
            "oracle: frame 0 side, frame 1 side or their mean per 8x8 block": _pick(sides, err(sides), 8),
            "rule: sides weighted by forward-backward consistency": (w0 * side0 + w1 * side1) / (w0 + w1),
            "rule: the pair whose two warps agree better (5x5)": (agree_lin * linear + agree_splat * splat)
            / (agree_lin + agree_splat),
        }
        for name, out in outs.items():
            mse = ((out.clamp(0, 1) - y) ** 2).mean((1, 2, 3))
            psnrs.setdefault(name, []).extend((10 * torch.log10(1 / mse)).tolist())
    return {name: float(np.mean(v)) for name, v in psnrs.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", default="data/02_intermediate/triplets.h5")
    ap.add_argument("--seconds", type=float, default=300)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--inputs", choices=("all", "cues"), default="all")
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--oracles", action="store_true", help="score oracle choices and fixed rules; train nothing")
    ap.add_argument("--split", default="val", help="with --oracles: the split to score")
    args = ap.parse_args()
    torch.manual_seed(args.seed)

    store = TripletStore(args.store)
    preset = store.prior_preset
    if preset is None:
        raise SystemExit(f"{args.store}: no stored DIS prior (ingest with ingestion.dis_prior)")

    def split(name, **kw):
        return TripletDataset(store, name, flows=False, prior=preset, prior_from="store", compact=True, **kw)

    if args.oracles:
        for name, value in oracles(split(args.split)).items():
            print(f"{value:7.3f} dB  {name}")
        return
    train_set = split("train", crop=(128, 128), augment=True, times="all")
    evals = {name: split(name) for name in ("val", "test")}
    unseen = {name: np.array([store.meta.iloc[int(r)]["style"] in UNSEEN for r in ds._rows])
              for name, ds in evals.items()}
    model = Selector(args.inputs == "all")
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    start, step, epoch, done = time.time(), 0, 0, False
    while not done:
        train_set.set_epoch(epoch)
        loader = DataLoader(train_set, batch_size=8, shuffle=True, num_workers=1,
                            generator=torch.Generator().manual_seed(args.seed + epoch))
        for s in loader:
            s = to_float(s)
            pred, _ = model(s["img0"], s["img1"], s["prior"], s["t"])
            loss = torch.sqrt((pred - s["target"]) ** 2 + 1e-6).mean()  # Charbonnier, as VFI training
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if step % args.eval_every == 0:
                print(json.dumps({"step": step, "seconds": round(time.time() - start),
                                  **score(model, evals["val"], unseen["val"])}), flush=True)
            if time.time() - start > args.seconds:
                done = True
                break
        epoch += 1
    for name, ds in evals.items():
        print(json.dumps({"split": name, "steps": step, **score(model, ds, unseen[name])}), flush=True)


if __name__ == "__main__":
    main()
