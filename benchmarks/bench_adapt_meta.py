"""Can meta-training make the clip's 2x triplets teach the flow? A Meta-SGD probe for `--adapt`.

`bench_adapt_bound.py --gradients` measured that the clip's 2x-spaced triplets (all a user has)
push the flow net's correction heads away from what the clip's in-betweens need, while the warp
selector, which they do teach, tops out near +0.1 dB. Learning to adapt (MAML, Finn et al. 2017;
for frame interpolation Choi et al., CVPR 2020) trains a model so that a step on a task's own
training signal helps that task's real objective. This script meta-trains the smallest version
that leaves the shipped model untouched when nothing is adapted, in the spirit of Meta-SGD (Li et
al. 2017):

- the correction heads (the ``up`` layers of the flow net's blocks) stay at zero, so the
  unadapted model is exactly the one under test;
- one adaptation step sets them to ``-alpha * gradient`` of the loss on a shot's 2x triplets
  (inputs k and k + 2 predict input k + 1), ``alpha`` a learned step size per head weight;
- the outer loss is that adapted model's loss on the same shot's true in-betweens (1x spacing),
  and its gradient (second order, through the inner gradient) trains the flow net's trunk and
  ``alpha``. The warp selector stays frozen.

Tasks are shots of the training styles only (cel, paper, cg; never watercolor), five drawings
each at 480x270, encoded as a 12 fps mp4 and decoded, with the exact in-betweens as truth: the
benchmark clip's protocol. A few shots are kept aside and scored on whole frames as meta-training
goes. At the end the learned step is taken on `bench_adapt_bound.py`'s split of the watercolor
clip: its 2x triplets (what `--adapt` sees) and, for comparison, its other in-betweens with
their truth, each scored on the same 57 held-out in-betweens (one pass).

    python benchmarks/bench_adapt_meta.py [--model data/06_models/vfi.pt] [--shots-per-style 20]
        [--meta-steps 300] [--trunk-lr 1e-4]

Prints progress and the final gains, and appends to benchmarks/results/adapt_meta.json.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.func import functional_call

from animvfi_pipeline.data.synthetic import SyntheticConfig
from animvfi_pipeline.data.synthetic_video import Shot, make_clip, write_clip
from animvfi_pipeline.inference.adapt import held_out_psnr, whole_frame_priors
from animvfi_pipeline.inference.interpolate import load_vfi_model_from
from animvfi_pipeline.inference.video_io import probe, read_frames
from animvfi_pipeline.training.losses import charbonnier
from bench_adapt import FPS_IN
from bench_adapt_bound import append_runs, clip_split, mean_gradient

RESULTS = Path(__file__).resolve().parent / "results" / "adapt_meta.json"
DRAWINGS = 5  # per task shot: three 2x triplets, four in-betweens
CROP = 160  # meta-training crops (pixels); the kept-aside shots are scored whole
INITIAL_STEP = 0.03  # first step's length along the unit gradient: the best one-step size measured


@dataclasses.dataclass
class Tasks:
    """Per shot: decoded inputs (S, 5, H, W, 3) uint8, exact in-betweens (S, 4, H, W, 3) and the
    flow priors of the 2x pairs (S, 3, 4, H, W) and of the 1x pairs (S, 4, 4, H, W), float16."""

    inputs: np.ndarray
    truths: np.ndarray
    priors_2x: np.ndarray
    priors_1x: np.ndarray


def make_tasks(model: torch.nn.Module, shots_per_style: int) -> Tasks:
    """Shots of the training styles, through the benchmark's codec, with their flow priors."""
    styles = SyntheticConfig().styles
    shots = [Shot(seed=9000 + i, drawings=DRAWINGS, style=styles[i % len(styles)])
             for i in range(shots_per_style * len(styles))]
    clip = make_clip(shots, 480, 270, frames_per_window=2)
    with tempfile.TemporaryDirectory(prefix="bench-adapt-meta-") as tmp:
        decoded = list(read_frames(probe(write_clip(clip, Path(tmp) / "tasks.mp4", fps=FPS_IN))))

    inputs, truths, p2, p1 = [], [], [], []
    cpu = torch.device("cpu")
    for s in range(len(shots)):
        frames = decoded[s * DRAWINGS:(s + 1) * DRAWINGS]
        inputs.append(np.stack(frames))
        truths.append(np.stack([clip.truth(s, k + 0.5) for k in range(DRAWINGS - 1)]))
        # whole_frame_priors reads only the end frames of each triplet
        p2.append(np.stack(whole_frame_priors(model, list(zip(frames[:-2], frames[1:-1], frames[2:])), cpu)))
        p1.append(np.stack(whole_frame_priors(model, list(zip(frames[:-1], truths[-1], frames[1:])), cpu)))
        print(f"task shot {s + 1}/{len(shots)}", flush=True)
    return Tasks(np.stack(inputs), np.stack(truths), np.stack(p2), np.stack(p1))


def as_float(frames: np.ndarray) -> torch.Tensor:
    """uint8 (..., H, W, 3) -> float (..., 3, H, W) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).float().div(255).movedim(-1, -3)


def shot_batch(tasks: Tasks, s: int, spacing: int, rng: np.random.Generator | None):
    """(x0, target, x1, prior) of shot s: its 2x triplets (spacing 2) or its in-betweens (1),
    cropped at one random place (``rng``) or whole (None)."""
    frames = tasks.inputs[s]
    h, w = frames.shape[1:3]
    y, x = (0, 0) if rng is None else (rng.integers(h - CROP + 1), rng.integers(w - CROP + 1))
    ch, cw = (h, w) if rng is None else (CROP, CROP)
    if spacing == 2:
        first, middle, last, prior = frames[:-2], frames[1:-1], frames[2:], tasks.priors_2x[s]
    else:
        first, middle, last, prior = frames[:-1], tasks.truths[s], frames[1:], tasks.priors_1x[s]
    crop = (slice(y, y + ch), slice(x, x + cw))
    return (*(as_float(f[:, crop[0], crop[1]]) for f in (first, middle, last)),
            torch.from_numpy(prior[:, :, crop[0], crop[1]].astype(np.float32)))


class OneStepAdapter:
    """The flow net's correction heads as one learned step: ``-alpha * grad`` of the 2x loss."""

    def __init__(self, model: torch.nn.Module):
        self.model = model
        named = dict(model.named_parameters())
        self.heads = [n for n in named if n.startswith("flownet.blocks.") and ".up." in n]
        self.trunk = [p for n, p in named.items() if n.startswith("flownet.") and n not in self.heads]
        self.zero = {n: torch.zeros_like(named[n]) for n in self.heads}
        if any(named[n].abs().max() > 0 for n in self.heads):
            raise ValueError("the flow net's correction heads are not zero: this probe is for a model "
                             "whose flow stays at DIS until it adapts (freeze_flow: true)")
        self.log_alpha: dict[str, torch.Tensor] = {}

    def loss(self, heads: dict[str, torch.Tensor], batch) -> torch.Tensor:
        x0, target, x1, prior = batch
        return charbonnier(functional_call(self.model, heads, (x0, x1, 0.5), {"prior": prior})["pred"], target)

    def gradient(self, batch, create_graph: bool) -> list[torch.Tensor]:
        heads = {n: z.clone().requires_grad_(True) for n, z in self.zero.items()}
        return list(torch.autograd.grad(self.loss(heads, batch), list(heads.values()), create_graph=create_graph))

    def adapted(self, batch, create_graph: bool = False) -> dict[str, torch.Tensor]:
        grads = self.gradient(batch, create_graph)
        return {n: -self.log_alpha[n].exp() * g for n, g in zip(self.heads, grads)}

    @torch.no_grad()
    def psnr(self, heads: dict[str, torch.Tensor], batch) -> float:
        x0, target, x1, prior = batch
        pred = functional_call(self.model, heads, (x0, x1, 0.5), {"prior": prior})["pred"]
        mse = ((pred.clamp(0, 1) * 255).round() - target * 255).pow(2).mean((1, 2, 3))
        return float((10 * torch.log10(255.0**2 / mse)).mean())


def meta_train(adapter: OneStepAdapter, tasks: Tasks, steps: int, trunk_lr: float, seed: int) -> list[dict]:
    """Meta-SGD on the training shots; returns the kept-aside shots' mean gain every 100 steps."""
    rng = np.random.default_rng(seed)
    n = len(tasks.inputs)
    aside = list(range(n - 6, n))  # two shots per style, scored whole
    train = list(range(n - 6))
    norms = [float(torch.sqrt(sum((g**2).sum() for g in adapter.gradient(shot_batch(tasks, s, 2, rng), False))))
             for s in train[:6]]
    alpha0 = INITIAL_STEP / float(np.median(norms))
    adapter.log_alpha = {n: torch.full_like(z, math.log(alpha0)).requires_grad_(True) for n, z in adapter.zero.items()}
    for p in adapter.trunk:
        p.requires_grad_(True)
    opt = torch.optim.Adam([{"params": adapter.trunk, "lr": trunk_lr},
                            {"params": list(adapter.log_alpha.values()), "lr": 3e-2}])
    unadapted = {s: adapter.psnr(adapter.zero, shot_batch(tasks, s, 1, None)) for s in aside}

    def aside_gain() -> float:
        return float(np.mean([adapter.psnr({k: v.detach() for k, v in adapter.adapted(shot_batch(tasks, s, 2, None)).items()},
                                           shot_batch(tasks, s, 1, None)) - unadapted[s] for s in aside]))

    curve = [{"step": 0, "aside_gain_db": aside_gain(), "alpha": alpha0}]
    print(f"meta step 0: kept-aside shots {curve[-1]['aside_gain_db']:+.3f} dB, alpha {alpha0:.3g}", flush=True)
    started = time.perf_counter()
    for step in range(1, steps + 1):
        s = train[rng.integers(len(train))]
        heads = adapter.adapted(shot_batch(tasks, s, 2, rng), create_graph=True)
        outer = adapter.loss(heads, shot_batch(tasks, s, 1, rng))
        opt.zero_grad()
        outer.backward()
        opt.step()
        if step % 100 == 0 or step == steps:
            alpha = float(np.mean([float(v.detach().exp().mean()) for v in adapter.log_alpha.values()]))
            curve.append({"step": step, "aside_gain_db": aside_gain(), "alpha": alpha})
            print(f"meta step {step}: kept-aside shots {curve[-1]['aside_gain_db']:+.3f} dB, mean alpha "
                  f"{alpha:.3g}, {time.perf_counter() - started:.0f} s", flush=True)
    for p in adapter.trunk:
        p.requires_grad_(False)
    return curve


def clip_gains(adapter: OneStepAdapter) -> dict[str, float]:
    """The learned step on the watercolor clip: from its 2x triplets and from its true in-betweens."""
    model = adapter.model
    scored, training_sets = clip_split("mp4")
    before = held_out_psnr(model, scored, torch.device("cpu"))
    named = dict(model.named_parameters())
    params = [named[n] for n in adapter.heads]
    for p in params:
        p.requires_grad_(True)
    gains = {"before_db": before}
    for name, what in (("clip", "2x triplets"), ("oracle", "true in-betweens")):
        grads = mean_gradient(model, params, training_sets[name])
        with torch.no_grad():
            for n, p, g in zip(adapter.heads, params, grads):
                p.copy_(-adapter.log_alpha[n].exp() * g)
        gains[name] = held_out_psnr(model, scored, torch.device("cpu")) - before
        print(f"the learned step on the clip's {what}: {gains[name]:+.3f} dB "
              f"({len(scored)} held-out in-betweens, {before:.3f} dB before)", flush=True)
        with torch.no_grad():
            for p in params:
                p.zero_()
    return gains


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="data/06_models/vfi.pt", help="vfi.pt or MLflow model URI")
    parser.add_argument("--shots-per-style", type=int, default=20)
    parser.add_argument("--meta-steps", type=int, default=300)
    parser.add_argument("--trunk-lr", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    model = load_vfi_model_from(args.model).eval()
    model.requires_grad_(False)
    model.cfg = dataclasses.replace(model.cfg, freeze_flow=False)  # gradients must reach the flow net
    adapter = OneStepAdapter(model)
    started = time.perf_counter()
    tasks = make_tasks(model, args.shots_per_style)
    curve = meta_train(adapter, tasks, args.meta_steps, args.trunk_lr, args.seed)
    gains = clip_gains(adapter)
    append_runs(RESULTS, [{"model": str(args.model), "shots": len(tasks.inputs), "meta_steps": args.meta_steps,
                           "trunk_lr": args.trunk_lr, "seed": args.seed, "curve": curve, "clip": gains,
                           "seconds": round(time.perf_counter() - started), "torch_threads": torch.get_num_threads()}])


if __name__ == "__main__":
    main()
