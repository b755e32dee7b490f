"""Does `animvfi interpolate --adapt` beat the plain model on a style it was not trained on?

Goal (issue #10): on synthetic clips of a style family training never saw (watercolor), drop
every other frame, interpolate 2x with and without ``--adapt``, score the in-betweens against
the dropped frames: ``--adapt`` should win by >= 0.3 dB PSNR within 2 CPU minutes for a 10 s
480x270 clip.

The clip: 5 shots of 48 drawings on ones (10 s at 24 fps, 480x270, ``frames_per_window=4``).
Its even drawings are the input (24 per shot, 5 s at 12 fps, an mp4 as a user would have, or with
``--input png`` a folder of lossless PNG frames, as a studio exports them); the odd ones, rendered
exactly by the generator, are the truth for the in-betweens. In-betweens
across the four cuts are copies by design and are not scored. Both runs go through the same
library calls the CLI makes (``adapt_to_clip``, then ``interpolate_clip`` to PNG frames, so no
encoder touches the scored frames).

    python benchmarks/bench_adapt.py [--model data/06_models/vfi.pt] [--seconds 120]
        [--parameters all|flow|synthesis] [--lr 1e-4] [--steps N] [--held-out-only] [--quick]
        [--input mp4|png]

Prints the figures and writes benchmarks/results/adapt.json (one entry per parameter set and lr
tried; the PNG input under its own key). The CPU may be shared: the load average and the steps
actually done are recorded.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import torch

from animvfi_pipeline.data.synthetic_video import Shot, make_clip, write_clip
from animvfi_pipeline.evaluation.metrics import psnr, ssim
from animvfi_pipeline.inference.adapt import AdaptConfig, adapt_to_clip
from animvfi_pipeline.inference.interpolate import (
    InterpolateConfig,
    ModelInterpolator,
    ModelSettings,
    interpolate_clip,
    load_vfi_model_from,
)

RESULTS = Path(__file__).resolve().parent / "results" / "adapt.json"
SEEDS = (501, 502, 503, 504, 505)  # not the ingestion's seeds; the style alone is unseen anyway
INPUT_DRAWINGS = 24  # per shot: 48 drawings on ones, every other one kept
FPS_IN = 12


def input_clip(width: int, height: int, shots: int):
    """The even drawings of the 24 fps clip: its scenes at half the drawings per window."""
    return make_clip([Shot(seed=s, drawings=INPUT_DRAWINGS, style="watercolor") for s in SEEDS[:shots]],
                     width, height, frames_per_window=2)


def score(clip, frames_dir: Path) -> dict[str, float]:
    """PSNR/SSIM of every in-between inside a shot (output frame 2k+1, between inputs k and k+1)."""
    outputs = sorted(frames_dir.glob("*.png"))
    assert len(outputs) == 2 * clip.n_frames, f"{len(outputs)} output frames for {clip.n_frames} inputs"
    psnrs, ssims = [], []
    for k in range(clip.n_frames - 1):
        (shot, d), (shot_next, _) = clip.drawing_of[k], clip.drawing_of[k + 1]
        if shot != shot_next:
            continue
        pred = cv2.cvtColor(cv2.imread(str(outputs[2 * k + 1])), cv2.COLOR_BGR2RGB)
        truth = clip.truth(shot, d + 0.5)  # the dropped odd drawing of the 24 fps clip
        psnrs.append(psnr(pred, truth))
        ssims.append(ssim(pred, truth))
    return {"psnr": float(np.mean(psnrs)), "ssim": float(np.mean(ssims)), "n_scored": len(psnrs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="data/06_models/vfi.pt", help="vfi.pt or MLflow model URI")
    parser.add_argument("--seconds", type=float, default=120.0, help="--adapt-seconds")
    parser.add_argument("--parameters", default="all", choices=("all", "flow", "synthesis"))
    parser.add_argument("--lr", type=float, default=AdaptConfig.lr)
    parser.add_argument("--max-side", type=int, default=AdaptConfig.max_side,
                        help="adaptation frames at most this long (240: the 2x-spaced triplets at half size)")
    parser.add_argument("--skip-plain", action="store_true", help="reuse the plain figures of the last result")
    parser.add_argument("--steps", type=int, default=None, help="--adapt-steps (with the budget, first wins)")
    parser.add_argument("--held-out-only", action="store_true",
                        help="only adapt and report the held-out check (for trying parameter sets and lrs fast)")
    parser.add_argument("--quick", action="store_true", help="240x136, 2 shots, 20 s: a smoke test")
    parser.add_argument("--input", default="mp4", choices=("mp4", "png"),
                        help="the 12 fps input as an H.264 mp4 (CRF 12) or a lossless PNG folder")
    args = parser.parse_args()

    width, height, shots = (240, 136, 2) if args.quick else (480, 270, 5)
    seconds = 20.0 if args.quick else args.seconds
    clip = input_clip(width, height, shots)
    model = load_vfi_model_from(args.model)
    settings = ModelSettings(device="cpu")
    run = InterpolateConfig(factor=2, progress=False, folder_fps=Fraction(FPS_IN))
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    key = f"{width}x{height}" + ("" if args.input == "mp4" else f"-{args.input}")
    with tempfile.TemporaryDirectory(prefix="bench-adapt-") as tmp:
        # A path without a suffix is written as a folder of PNG frames, read back at FPS_IN.
        source = write_clip(clip, Path(tmp) / ("input.mp4" if args.input == "mp4" else "input"), fps=FPS_IN)
        entry = results.setdefault(key, {"model": str(args.model), "runs": []})
        if not args.held_out_only and not (args.skip_plain and "plain" in entry):
            started = time.perf_counter()
            interpolate_clip(source, Path(tmp) / "plain", ModelInterpolator(model, settings),
                             run)
            entry["plain"] = {**score(clip, Path(tmp) / "plain"), "seconds": time.perf_counter() - started}
        if "plain" in entry:
            print(f"without --adapt: PSNR {entry['plain']['psnr']:.2f} dB, SSIM {entry['plain']['ssim']:.4f} "
                  f"({entry['plain']['n_scored']} in-betweens)", flush=True)

        load = os.getloadavg()[0]
        config = AdaptConfig(seconds=seconds, steps=args.steps, parameters=args.parameters, lr=args.lr,
                             max_side=args.max_side)
        adapted = adapt_to_clip(model, source, config, "cpu", progress=sys.stderr.isatty(),
                                folder_fps=Fraction(FPS_IN))
        print(adapted.summary(), flush=True)
        figures, gain = {}, None
        if not args.held_out_only:
            interpolate_clip(source, Path(tmp) / "adapted", ModelInterpolator(adapted.model, settings),
                             run)
            figures = score(clip, Path(tmp) / "adapted")
            gain = figures["psnr"] - entry["plain"]["psnr"]
            print(f"with --adapt ({args.parameters}, lr {args.lr:g}, {seconds:g} s): PSNR {figures['psnr']:.2f} dB, "
                  f"SSIM {figures['ssim']:.4f}: {gain:+.2f} dB (goal +0.30)")
    entry["runs"].append({
        "parameters": args.parameters, "lr": args.lr, "max_side": args.max_side, "seconds_budget": seconds, "steps_limit": args.steps,
        "steps": adapted.steps,
        "adapt_seconds": round(adapted.seconds, 1), "held_out_before": adapted.held_out_before,
        "held_out_after": adapted.held_out_after, "used_adapted": adapted.used_adapted,
        **figures, "gain_db": gain, "load_average": load, "torch_threads": torch.get_num_threads(),
    })
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
