"""How much could `--adapt` buy at all? The same adaptation, shown the answers.

`bench_adapt.py` measures `--adapt` as a user runs it: the clip teaches itself with triplets at
twice the spacing it is interpolated at. This script asks what the same fine-tuning (the library's
``adapt_on_triplets``: same loss, optimizer, crops, learning rate and number of steps) buys when
its training triplets are the **true in-betweens** of the clip (an upper bound no user has), and
compares it with the clip's own 2x triplets, both scored on the same in-betweens that neither saw.

The clip is bench_adapt's (5 watercolor shots, 24 input drawings each at 480x270). Its in-betweens
inside shots are split in two alternating halves: the "oracle" trains on the first half (input
k, true drawing k + 1/2, input k + 1), and both runs are scored on the second half, one pass each
(as the held-out check of ``--adapt``). ``--inputs`` says what the frames are:

- ``mp4`` (bench_adapt's setting): the 12 fps input is an mp4; the truth is the exact drawings.
- ``exact``: the rendered frames themselves, inputs and truth (what the codec costs).
- ``mp4-24``: the whole 24 fps clip is an mp4, every other decoded frame is the input and the
  dropped decoded frames are the truth: how footage with no exact truth (real animation) is scored.

    python benchmarks/bench_adapt_bound.py [--model data/06_models/vfi.pt] [--steps 300] [--lr 1e-4]
        [--inputs mp4|exact|mp4-24] [--training oracle,clip[,half]] [--gradients]

``--training half`` is the clip's 2x triplets at half size, so that motion in pixels matches the
in-betweens' (what ``--adapt``'s ``max_side`` would do). ``--gradients`` trains nothing: it
compares the oracle's full-batch gradient at the starting weights with each other set's (cosine
per parameter group: does a step on the clip's own triplets go where the true in-betweens want?)
and scores one plain gradient step of a few sizes along each.

Prints one line per run and appends to benchmarks/results/adapt_bound.json. Steps, not seconds,
fix the budget, so a busy machine changes the time taken but not the figures.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch

from animvfi_pipeline.data.synthetic_video import Shot, make_clip, write_clip
from animvfi_pipeline.inference.adapt import (
    AdaptConfig,
    adapt_on_triplets,
    held_out_psnr,
    trainable_parameters,
    whole_frame_priors,
)
from animvfi_pipeline.inference.interpolate import load_vfi_model_from
from animvfi_pipeline.inference.video_io import probe, read_frames
from animvfi_pipeline.training.losses import vfi_loss
from bench_adapt import FPS_IN, input_clip  # the same clip, from the script beside this one

RESULTS = Path(__file__).resolve().parent / "results" / "adapt_bound.json"
TRAINING_SETS = ("oracle", "clip", "half")  # see clip_split


def frames_and_truth(clip, inputs: str) -> tuple[list[np.ndarray], Callable[[int], np.ndarray]]:
    """The input frames as the adaptation sees them, and the truth of the in-between after input k."""
    def exact_truth(k: int) -> np.ndarray:
        shot, drawing = clip.drawing_of[k]
        return clip.truth(shot, drawing + 0.5)

    if inputs == "exact":
        return [clip.frame(i) for i in range(clip.n_frames)], exact_truth
    with tempfile.TemporaryDirectory(prefix="bench-adapt-bound-") as tmp:
        if inputs == "mp4":
            return list(read_frames(probe(write_clip(clip, Path(tmp) / "input.mp4", fps=FPS_IN)))), exact_truth
        # Every shot has an even number of drawings, so input frame k is frame 2k of the 24 fps clip.
        full = make_clip([Shot(seed=s.seed, drawings=2 * s.drawings, style=s.style) for s in clip.shots],
                         clip.width, clip.height, frames_per_window=2 * clip.frames_per_window)
        decoded = list(read_frames(probe(write_clip(full, Path(tmp) / "full.mp4", fps=2 * FPS_IN))))
    return decoded[0::2], lambda k: decoded[2 * k + 1]


def append_runs(path: Path, runs: list[dict]) -> None:
    """Add ``runs`` to the JSON results file at ``path``; read just before writing and replaced
    atomically, so runs of these scripts side by side keep theirs."""
    results = json.loads(path.read_text()) if path.is_file() else {"runs": []}
    results["runs"] += runs
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    partial.write_text(json.dumps(results, indent=2) + "\n")
    partial.replace(path)


def clip_split(inputs: str) -> tuple[list, dict[str, list]]:
    """The scored in-betweens (every other one inside a shot) and the training sets: ``oracle``
    (the other in-betweens with their truth), ``clip`` (the 2x triplets --adapt trains on) and
    ``half`` (those at half size)."""
    clip = input_clip(480, 270, 5)
    frames, truth = frames_and_truth(clip, inputs)
    inside = [k for k in range(clip.n_frames - 1) if clip.drawing_of[k][0] == clip.drawing_of[k + 1][0]]

    def in_between(k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return frames[k], truth(k), frames[k + 1]

    training_sets = {
        "oracle": [in_between(k) for k in inside[0::2]],
        # what --adapt trains on: inputs k and k + 2 predict k + 1, never across a cut
        "clip": [(frames[k], frames[k + 1], frames[k + 2]) for k in inside if k + 1 in inside],
    }
    training_sets["half"] = [tuple(half_size(f) for f in triplet) for triplet in training_sets["clip"]]
    return [in_between(k) for k in inside[1::2]], training_sets


def half_size(frame: np.ndarray) -> np.ndarray:
    """The frame at half its width and height (area filter): 2x-spaced motion at 1x pixel size."""
    return cv2.resize(frame, (frame.shape[1] // 2, frame.shape[0] // 2), interpolation=cv2.INTER_AREA)


def mean_gradient(model: torch.nn.Module, params: list[torch.nn.Parameter], triplets) -> list[torch.Tensor]:
    """The training loss's gradient averaged over whole triplets (the prior as at inference)."""
    grads = [torch.zeros_like(p) for p in params]
    for (first, middle, last), prior in zip(triplets, whole_frame_priors(model, triplets, torch.device("cpu"))):
        x0, target, x1 = (torch.from_numpy(f).permute(2, 0, 1)[None].float() / 255.0 for f in (first, middle, last))
        out = model(x0, x1, 0.5, prior=torch.from_numpy(prior.astype(np.float32))[None])
        loss, _ = vfi_loss({"pred": out["pred"]}, target, {"charbonnier": 1.0})
        for acc, g in zip(grads, torch.autograd.grad(loss, params, allow_unused=True)):
            if g is not None:
                acc += g / len(triplets)
    return grads


def gradient_report(model: torch.nn.Module, training_sets: dict, scored: list) -> dict:
    """Cosine between the oracle's gradient and each other set's (all, flow net, selector), and
    the held-out PSNR after one step of each, of a few sizes along the unit gradient."""
    model.eval()
    params = trainable_parameters(model, "all")
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    start = [p.detach().clone() for p in params]
    grads = {name: mean_gradient(model, params, triplets) for name, triplets in training_sets.items()}
    report = {"cosine": {}, "one_step": {}}
    for other in (name for name in grads if name != "oracle"):
        for group in ("all", "flownet", "selector"):
            pick = [i for i, n in enumerate(names) if group == "all" or n.startswith(group + ".")]
            a, b = (torch.cat([grads[k][i].flatten() for i in pick]) for k in ("oracle", other))
            report["cosine"][f"{other}:{group}"] = float(a @ b / (a.norm() * b.norm()).clamp_min(1e-30))
    report["before"] = held_out_psnr(model, scored, torch.device("cpu"))
    for name, grad in grads.items():
        norm = torch.sqrt(sum((g ** 2).sum() for g in grad))
        for size in (0.01, 0.03, 0.1):
            with torch.no_grad():
                for p, p0, g in zip(params, start, grad):
                    p.copy_(p0 - size * g / norm)
            report["one_step"][f"{name}@{size:g}"] = held_out_psnr(model, scored, torch.device("cpu"))
            print(f"one step along the {name} gradient, size {size:g}: "
                  f"{report['one_step'][f'{name}@{size:g}'] - report['before']:+.3f} dB", flush=True)
    with torch.no_grad():
        for p, p0 in zip(params, start):
            p.copy_(p0)
    print("gradient cosine with the oracle's: " + ", ".join(f"{k} {v:+.2f}" for k, v in report["cosine"].items()))
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="data/06_models/vfi.pt", help="vfi.pt or MLflow model URI")
    parser.add_argument("--steps", type=int, default=300, help="adaptation steps of each run")
    parser.add_argument("--lr", type=float, default=AdaptConfig.lr)
    parser.add_argument("--parameters", default="all", choices=("all", "flow", "synthesis"))
    parser.add_argument("--inputs", default="mp4", choices=("mp4", "exact", "mp4-24"),
                        help="what the frames and the truth are (see above)")
    parser.add_argument("--training", default="oracle,clip",
                        help="comma-separated: oracle (true in-betweens), clip (the clip's 2x triplets), "
                             "half (those at half size: motion in pixels as the in-betweens')")
    parser.add_argument("--gradients", action="store_true",
                        help="compare the oracle's gradient with the other sets' and one-step gains "
                             "instead of training")
    args = parser.parse_args()
    names = args.training.split(",")
    unknown = sorted(set(names) - set(TRAINING_SETS))
    if unknown:
        parser.error(f"unknown training set(s) {unknown}; choose from {', '.join(TRAINING_SETS)}")
    if args.gradients and ("oracle" not in names or len(names) < 2):
        parser.error("--gradients compares the oracle with the other sets: give --training oracle,<set>[,...]")

    scored, training_sets = clip_split(args.inputs)
    model = load_vfi_model_from(args.model)
    print(f"{len(scored)} scored in-betweens, inputs {args.inputs}", flush=True)

    runs = []
    if args.gradients:  # instead of training
        runs.append({"model": str(args.model), "inputs": args.inputs, "n_scored": len(scored),
                     "gradients": gradient_report(model, {n: training_sets[n] for n in names}, scored)})
    training = [] if args.gradients else names
    for name in training:
        train = training_sets[name]
        config = AdaptConfig(seconds=None, steps=args.steps, lr=args.lr, parameters=args.parameters,
                             max_triplets=len(train), held_out=len(scored))
        started = time.perf_counter()
        adapted = adapt_on_triplets(model, train, scored, config, "cpu")
        gain = adapted.held_out_after - adapted.held_out_before
        print(f"trained on {name} ({len(train)} triplets), {adapted.steps} steps, lr {args.lr:g}, "
              f"{args.parameters}: without adapting {adapted.held_out_before:.3f} dB, adapted "
              f"{adapted.held_out_after:.3f} dB "
              f"({gain:+.3f}) in {time.perf_counter() - started:.0f} s", flush=True)
        runs.append({
            "model": str(args.model), "training": name, "n_train": len(train), "n_scored": len(scored),
            "inputs": args.inputs, "steps": adapted.steps, "lr": args.lr, "parameters": args.parameters,
            "psnr_before": adapted.held_out_before, "psnr_after": adapted.held_out_after, "gain_db": gain,
            "seconds": round(adapted.seconds, 1), "torch_threads": torch.get_num_threads(),
        })
    append_runs(RESULTS, runs)


if __name__ == "__main__":
    main()
