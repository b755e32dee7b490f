"""Transfer check: a trained model against its prior on scenes, a style and a size it never saw.

    .venv/bin/python tools/transfer_check.py [--model data/06_models/vfi.pt ...]
        [--size 960x540] [--style watercolor] [--n 24] [--seed 4321] [--flips N] [--flow-candidates LIST|none]
        [--warp bilinear|bicubic] [--out FILE.json]

Renders ``--n`` fresh synthetic triplets (generator seed ``--seed``, not the pipeline's, so the
scenes are new) of one style family at ``--size`` into a temporary ATD-12K-layout folder, then
scores frame2 at t = 0.5 for each model given, its prior (the same network with its learned
parts off) and the classical DIS baseline: PSNR and SSIM, mean over the triplets, and the gain
over the prior. The default is the unseen style at ATD-12K's 960x540, twice the training size,
so motion in pixels is twice what training saw: the embedded test split cannot show that.
``--flips`` runs each model and its prior with that many mirrored passes instead of the
checkpoint's own ``flip_ensemble``; ``--flow-candidates`` (comma-separated DIS variants, or
"none") likewise replaces its ``flow_candidates``, and ``--warp`` its ``warp_mode``.

Nothing here feeds the pipeline; docs/training.md quotes the figures.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from animvfi_pipeline.data.atd12k import read_image, scan_atd12k
from animvfi_pipeline.data.synthetic import SyntheticConfig, write_synthetic_atd12k
from animvfi_pipeline.evaluation.baselines import ClassicalFlowConfig, classical_flow_predictor, model_predictor
from animvfi_pipeline.evaluation.metrics import psnr, ssim
from animvfi_pipeline.models.checkpoint import load_vfi_model
from animvfi_pipeline.models.vfi import prior_network


def render(root: Path, size: tuple[int, int], style: str, n: int, seed: int) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """``n`` test triplets of ``style`` at ``size`` = (W, H): (name, frame1, frame2, frame3)."""
    seen = "paper" if style != "paper" else "cel"  # a training family is required; no triplet uses it
    cfg = SyntheticConfig(seed=seed, width=size[0], height=size[1], n_train=0, n_test=n, styles=(seen,),
                          unseen_styles=(style,), unseen_test_share=1.0, extra_times=())
    write_synthetic_atd12k(root, cfg)
    triplets = []
    for rec in scan_atd12k(root, splits=("test",)):
        frames = [read_image(p) for p in rec.frame_paths]
        triplets.append((rec.name, *frames))
    return triplets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", nargs="+", default=["data/06_models/vfi.pt"])
    ap.add_argument("--size", default="960x540", help="WxH of the rendered frames")
    ap.add_argument("--style", default="watercolor")
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--seed", type=int, default=4321)
    ap.add_argument("--flips", type=int, choices=(1, 2, 4), default=None,
                    help="mirrored passes for each model and its prior (default: the checkpoint's)")
    ap.add_argument("--flow-candidates", default=None,
                    help="DIS variants each model and its prior choose their flow among, comma-separated, "
                         "or 'none' (default: the checkpoint's)")
    ap.add_argument("--warp", choices=("bilinear", "bicubic"), default=None,
                    help="how each model and its prior sample the frames along the flows (default: the checkpoint's)")
    ap.add_argument("--out", default=None, help="also write the figures to this JSON file")
    args = ap.parse_args()
    size = tuple(int(v) for v in args.size.lower().split("x"))

    with tempfile.TemporaryDirectory() as tmp:
        triplets = render(Path(tmp) / "atd", size, args.style, args.n, args.seed)
    methods = {"classical_flow": classical_flow_predictor(ClassicalFlowConfig())}
    for path in args.model:
        model = load_vfi_model(path)
        if args.flips is not None:  # the prior below shares the config, so it runs the same way
            model.cfg.flip_ensemble = args.flips
        if args.flow_candidates is not None:
            model.cfg.flow_candidates = [] if args.flow_candidates == "none" else args.flow_candidates.split(",")
        if args.warp is not None:
            model.cfg.warp_mode = args.warp
        methods[f"prior ({path})"] = model_predictor(prior_network(model.cfg))
        methods[f"model ({path})"] = model_predictor(model)

    scores: dict[str, dict[str, float]] = {}
    for name, predict in methods.items():
        p, s, started = [], [], time.perf_counter()
        for _, f1, f2, f3 in tqdm(triplets, desc=name[:40], unit="triplet"):
            pred = predict(f1, f3, 0.5)
            p.append(psnr(pred, f2))
            s.append(ssim(pred, f2))
        scores[name] = {"psnr": float(np.mean(p)), "ssim": float(np.mean(s)),
                        "seconds_per_triplet": (time.perf_counter() - started) / len(triplets)}

    print(f"{len(triplets)} {args.style} triplets at {size[0]}x{size[1]}, generator seed {args.seed}, "
          f"flips {args.flips or 'as in each checkpoint'}")
    for name, sc in scores.items():
        line = f"{name:60s} {sc['psnr']:.3f} dB  SSIM {sc['ssim']:.4f}"
        if name.startswith("model ("):
            prior = scores["prior (" + name[len("model ("):]]
            sc["gain_psnr"], sc["gain_ssim"] = sc["psnr"] - prior["psnr"], sc["ssim"] - prior["ssim"]
            line += f"  model - prior {sc['gain_psnr']:+.3f} dB, SSIM {sc['gain_ssim']:+.4f}"
        print(line)
    if args.out:
        out = Path(args.out)
        tmp = out.with_suffix(out.suffix + ".tmp")
        tmp.write_text(json.dumps({"size": size, "style": args.style, "n": len(triplets), "seed": args.seed,
                                   "flips": args.flips, "flow_candidates": args.flow_candidates, "warp": args.warp, "scores": scores}, indent=2) + "\n")
        tmp.replace(out)


if __name__ == "__main__":
    main()
