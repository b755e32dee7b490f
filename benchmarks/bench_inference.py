"""Inference cost of the VFI model on CPU: one 960x540 frame pair in, the middle frame out.

For each backbone: parameters (M), GFLOPs (torch.utils.flop_counter), and the median seconds per
frame of ``VFIModel.inference`` (flow + synthesis) over several runs after warm-up, batch 1,
2 threads, inference mode. The flow network alone (with its DIS prior) and the DIS prior alone
are timed too. Weights are random: they do not change the cost. The frames are a synthetic
cartoon pair, since DIS's time depends on the picture. Budget: 0.65 s/frame on a 2-core CPU.

    python benchmarks/bench_inference.py [--runs 7] [--size 960x540] [--backbones unet resunet]
                                         [--init dis|zero] [--dis-preset fine] [--intermediate both]
                                         [--fusion mean|select] [--flips 1 4]
                                         [--flow-candidates fine fine-pca fine-alpha10]
                                         [--warp bilinear bicubic]

The embedded default's model: ``--backbones none --intermediate all --fusion select --flips 1 4
--flow-candidates fine fine-pca fine-alpha10 --warp bicubic`` (``--flips``: mirrored passes
averaged, ``VFIConfig.flip_ensemble``, each count is timed; ``--flow-candidates``: the DIS fields
the prior is chosen among, ``VFIConfig.flow_candidates``; ``--warp``: ``VFIConfig.warp_mode``,
each kernel is timed).

Prints a table and writes benchmarks/results/inference.json. The CPU may be shared; the load
average before and after is recorded so a slow figure can be told from a busy machine.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from animvfi_pipeline.data.synthetic_builder import make_scene
from animvfi_pipeline.models.flownet import FlowNetConfig, clear_dis_cache, dis_prior
from animvfi_pipeline.models.synthesis import BACKBONES
from animvfi_pipeline.models.vfi import VFIConfig, VFIModel
from animvfi_pipeline.utils_io import atomic_path

ROOT = Path(__file__).resolve().parents[1]
BUDGET_S = 0.65


def seconds(fn, runs: int, warmup: int = 2) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def cartoon_pair(width: int, height: int) -> tuple[torch.Tensor, torch.Tensor]:
    scene = make_scene(3, width, height, level=1)
    return tuple(torch.from_numpy(scene.render(t)).permute(2, 0, 1)[None].float() / 255 for t in (0.0, 1.0))


def measure(backbone: str, width: int, height: int, runs: int, init: str, preset: str,
            intermediate: str = "both", fusion: str = "mean", flips: int = 1,
            candidates: tuple[str, ...] = (), warp_mode: str = "bilinear") -> dict:
    torch.manual_seed(0)
    model = VFIModel(VFIConfig(backbone=backbone, flow=FlowNetConfig(init=init, dis_preset=preset),
                                intermediate=intermediate, fusion=fusion, flip_ensemble=flips,
                                flow_candidates=list(candidates), warp_mode=warp_mode)).eval()
    img0, img1 = cartoon_pair(width, height)
    with torch.inference_mode():
        counter = FlopCounterMode(display=False)
        with counter:
            model.inference(img0, img1, 0.5)
        # The same pair every run: the DIS cache (models.flownet) is emptied so each run pays for DIS.
        total = seconds(lambda: (clear_dis_cache(), model.inference(img0, img1, 0.5)), runs)
        flow = seconds(lambda: (clear_dis_cache(), model.flownet(img0, img1)), runs)
        fields = tuple(candidates) or preset
        prior = seconds(lambda: (clear_dis_cache(), dis_prior(img0, img1, fields)), runs) if init == "dis" else [0.0]
    return {
        "backbone": backbone,
        "init": init,
        "dis_preset": preset if init == "dis" else None,
        "intermediate": intermediate,
        "fusion": fusion,
        "flips": flips,
        "flow_candidates": list(candidates),
        "warp_mode": warp_mode,
        "dis_s": statistics.median(prior),
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "flow_params_m": sum(p.numel() for p in model.flownet.parameters()) / 1e6,
        "gflops": counter.get_total_flops() / 1e9,
        "s_per_frame": statistics.median(total),
        "s_per_frame_min": min(total),
        "flow_s": statistics.median(flow),
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--size", default="960x540", help="WIDTHxHEIGHT")
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=(*BACKBONES, "none"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--init", default="dis", choices=("dis", "zero"), help="FlowNetConfig.init")
    parser.add_argument("--dis-preset", default="fine", choices=("ultrafast", "fast", "medium", "fine"))
    parser.add_argument("--intermediate", default="both", choices=("linear", "splat", "both", "all"))
    parser.add_argument("--fusion", default="mean", choices=("mean", "select"))
    parser.add_argument("--flips", type=int, nargs="+", default=[1], choices=(1, 2, 4))
    parser.add_argument("--flow-candidates", nargs="*", default=[],
                        help="DIS variants the prior is chosen among (VFIConfig.flow_candidates); none: --dis-preset alone")
    parser.add_argument("--warp", nargs="+", default=["bilinear"], choices=("bilinear", "bicubic"),
                        help="VFIConfig.warp_mode: how the frames are sampled along the flows")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "inference.json")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    torch.set_num_threads(args.threads)

    load_before = os.getloadavg()
    rows = [measure(b, width, height, args.runs, args.init, args.dis_preset, args.intermediate, args.fusion, n,
                    tuple(args.flow_candidates), w)
            for b in args.backbones for n in args.flips for w in args.warp]
    load_after = os.getloadavg()

    prior = f"DIS prior ({', '.join(args.flow_candidates) or args.dis_preset})" if args.init == "dis" else "no prior"
    print(f"VFI inference at {width}x{height}, batch 1, {args.threads} threads, median of {args.runs} runs, {prior}")
    print(f"{'backbone':<10} {'warp':>8} {'flips':>5} {'params (M)':>10} {'GFLOPs':>8} {'s/frame':>8} {'best':>6} {'flow s':>7} {'DIS s':>6}  budget")
    for r in rows:
        ok = "ok" if r["s_per_frame"] <= BUDGET_S else "OVER"
        print(f"{r['backbone']:<10} {r['warp_mode']:>8} {r['flips']:>5} {r['params_m']:>10.2f} {r['gflops']:>8.1f} {r['s_per_frame']:>8.3f} "
              f"{r['s_per_frame_min']:>6.3f} {r['flow_s']:>7.3f} {r['dis_s']:>6.3f}  {ok} (<= {BUDGET_S})")
    print(f"load average before/after: {load_before[0]:.2f} / {load_after[0]:.2f} "
          f"on {os.cpu_count()} CPUs (other processes slow every figure down)")

    result = {
        "size": [width, height], "threads": args.threads, "budget_s": BUDGET_S,
        "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(), "load_average_before": load_before[0], "load_average_after": load_after[0],
        "results": rows,
    }
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
