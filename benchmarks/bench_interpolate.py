"""Cost of `animvfi interpolate` beyond the network itself, and its memory on long clips.

1. Overhead: for 960x540 and 1920x1080 clips (4 frames, 2x: 3 in-betweens and 8 output frames),
   the seconds per output frame of the whole CLI
   (``animvfi_pipeline.console.main``: model loading, two decoding passes, cut/hold analysis, tensor
   conversion, encoding) against the bare ``model.inference`` calls for the same in-betweens,
   each the best of three interleaved runs. Goal: the CLI adds less than 15 %. Because the
   difference of two timings drowns in noise on a shared CPU, the same run with the network
   replaced by the tensor round trip is timed too: that is the command's own cost, directly.
2. Memory: peak RSS of the CLI (a fresh process each) on a 1080p clip of 2 s and of 10 s.
   Goal: flat -- the clip is streamed, never held.

The model is the project's ``data/06_models/vfi.pt`` if it exists, else the embedded default
configuration (conf/base) with random weights, which costs the same. The memory runs use
``--flow-scale 0.25`` so that ten seconds of 1080p finish in minutes on a CPU; the full-size
frames, warps and writer are the same.

    python benchmarks/bench_interpolate.py [--quick] [--parts overhead memory]

Prints a table and writes benchmarks/results/interpolate.json. The CPU may be shared with other
jobs; the load average is recorded next to every figure.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
import yaml

from animvfi_pipeline.inference.interpolate import to_tensor
from animvfi_pipeline.inference.video_io import VideoSettings, VideoWriter, probe, read_frames
from animvfi_pipeline.models.checkpoint import load_vfi_model, make_checkpoint, save_checkpoint
from animvfi_pipeline.models.flownet import FlowNetConfig
from animvfi_pipeline.models.vfi import VFIConfig, VFIModel
from animvfi_pipeline.utils_io import atomic_path

ROOT = Path(__file__).resolve().parents[1]
GOAL_OVERHEAD = 0.15


def project_checkpoint(folder: Path) -> tuple[Path, str]:
    trained = ROOT / "data" / "06_models" / "vfi.pt"
    if trained.is_file():
        return trained, "data/06_models/vfi.pt"
    flow = yaml.safe_load((ROOT / "conf/base/parameters_flow_pretraining.yml").read_text())["flow_model"]
    vfi = yaml.safe_load((ROOT / "conf/base/parameters_vfi_training.yml").read_text())["vfi_model"]
    cfg = VFIConfig(**vfi, flow=FlowNetConfig(**flow))
    torch.manual_seed(0)
    path = folder / "vfi.pt"
    save_checkpoint(path, make_checkpoint("animvfi.vfi", VFIModel(cfg), cfg.to_dict()))
    return path, "conf/base config, random weights"


def make_clip(path: Path, n: int, width: int, height: int, fps: int = 24) -> Path:
    """Flat-coloured discs drifting over a gradient: cartoon-like, cheap to encode."""
    ys, xs = np.mgrid[0:height, 0:width]
    base = np.stack([xs * 200 // width + 30, ys * 180 // height + 40, np.full_like(xs, 150)], -1).astype(np.uint8)
    with VideoWriter(path, Fraction(fps), width, height, VideoSettings(preset="ultrafast")) as writer:
        for i in range(n):
            img = base.copy()
            for k in range(3):
                cx, cy = (width * (0.2 + 0.25 * k) + 6 * i) % width, height * (0.3 + 0.2 * k)
                disc = (xs - cx) ** 2 + (ys - cy) ** 2 < (height * 0.08) ** 2
                img[disc] = (240, 90 + 60 * k, 40)
            writer.write(img)
    return path


def bare_forward(model, pairs: list) -> float:
    """Seconds of ``model.inference`` alone for every in-between of a 2x run."""
    t = torch.tensor([0.5])
    with torch.inference_mode():
        start = time.perf_counter()
        for a, b in pairs:
            model.inference(a, b, t)
    return time.perf_counter() - start


def cli_run(ckpt: Path, clip: Path, out: Path, *extra: str) -> float:
    from animvfi_pipeline.console import main

    start = time.perf_counter()
    code = main(["interpolate", str(clip), "-o", str(out), "--model", str(ckpt), "--device", "cpu",
                 "-q", "--overwrite", *extra])
    if code != 0:
        raise SystemExit(f"animvfi failed with exit code {code}")
    return time.perf_counter() - start


def pipeline_only(clip: Path, out: Path) -> float:
    """Seconds of the same run with the network replaced by the tensor round trip alone: what the
    command costs on top of the network (decoding twice, analysis, conversions, encoding)."""
    from animvfi_pipeline.inference.interpolate import InterpolateConfig, interpolate_clip, to_images

    def no_network(img0, img1, ts):
        x0, x1 = to_tensor(img0), to_tensor(img1)
        return to_images(torch.cat([(1 - t) * x0 + t * x1 for t in ts]))

    start = time.perf_counter()
    interpolate_clip(clip, out, no_network, InterpolateConfig(overwrite=True, progress=False))
    return time.perf_counter() - start


def peak_rss_mb(ckpt: Path, clip: Path, out: Path) -> float:
    """Peak resident memory of one CLI run in its own process."""
    code = (
        "import resource, sys; from animvfi_pipeline.console import main; "
        f"rc = main(['interpolate', {str(clip)!r}, '-o', {str(out)!r}, '--model', {str(ckpt)!r}, "
        "'--device', 'cpu', '-q', '--overwrite', '--flow-scale', '0.25', '--preset', 'ultrafast']); "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(rc)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"animvfi failed on {clip.name}:\n{done.stderr}")
    return int(done.stdout.strip().splitlines()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer frames and 1 s / 3 s clips for memory")
    parser.add_argument("--parts", nargs="+", choices=("overhead", "memory"), default=["overhead", "memory"],
                        help="what to measure (the other part's figures are kept in the JSON)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    results: dict = {"machine": platform.platform(), "threads": torch.get_num_threads(), "overhead": [],
                     "memory": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ckpt, model_name = project_checkpoint(tmp)
        results["model"] = model_name
        n, repeats = (3, 1) if args.quick else (4, 3)
        for width, height in ((960, 540), (1920, 1080)) if "overhead" in args.parts else ():
            clip = make_clip(tmp / f"clip_{height}.mp4", n, width, height)
            model = load_vfi_model(ckpt)
            frames = list(read_frames(probe(clip)))
            pairs = [(to_tensor(a), to_tensor(b)) for a, b in zip(frames, frames[1:])]
            cli_run(ckpt, clip, tmp / "warmup.mp4")  # first-call costs (thread pools, allocator)
            bare_forward(model, pairs[:1])
            load = os.getloadavg()[0]
            # Interleaved, best of each: the runs least disturbed by other jobs on a shared CPU.
            bare, cli, rest = float("inf"), float("inf"), float("inf")
            for _ in range(repeats):
                bare = min(bare, bare_forward(model, pairs))
                cli = min(cli, cli_run(ckpt, clip, tmp / "out.mp4"))
                rest = min(rest, pipeline_only(clip, tmp / "rest.mp4"))
            n_pairs = len(pairs)
            row = {"size": f"{width}x{height}", "source_frames": n, "output_frames": 2 * n,
                   "interpolated": n_pairs, "repeats": repeats, "bare_forward_s_per_inbetween": bare / n_pairs,
                   "cli_s_per_output_frame": cli / (2 * n), "cli_s_per_inbetween": cli / n_pairs,
                   "overhead": cli / bare - 1.0, "pipeline_only_s_per_output_frame": rest / (2 * n),
                   "pipeline_share": rest / bare,
                   "load_avg_before": load, "load_avg_after": os.getloadavg()[0]}
            results["overhead"].append(row)
            print(f"{row['size']:>10}: bare forward {bare / n_pairs:6.2f} s/in-between | CLI {cli / n_pairs:6.2f} "
                  f"s/in-between, {cli / (2 * n):6.2f} s/output frame | overhead {100 * row['overhead']:+5.1f} % "
                  f"(goal < {100 * GOAL_OVERHEAD:.0f} %) | without the network {rest / (2 * n):5.2f} s/output "
                  f"frame = {100 * row['pipeline_share']:4.1f} % of the forward time | load {load:.1f}")
        for seconds in ((1, 3) if args.quick else (2, 10)) if "memory" in args.parts else ():
            clip = make_clip(tmp / f"long_{seconds}.mp4", 24 * seconds, 1920, 1080)
            load = os.getloadavg()[0]
            rss = peak_rss_mb(ckpt, clip, tmp / "long_out.mp4")
            results["memory"].append({"clip_s": seconds, "size": "1920x1080", "peak_rss_mb": rss, "load_avg": load})
            print(f"1080p clip of {seconds:2d} s: peak RSS {rss:7.1f} MB")
        if results["memory"]:
            rss = [m["peak_rss_mb"] for m in results["memory"]]
            results["memory_growth"] = rss[-1] / rss[0] - 1.0
            print(f"memory growth from the short to the long clip: {100 * results['memory_growth']:+.1f} % "
                  "(goal: flat)")
    out = ROOT / "benchmarks" / "results" / "interpolate.json"
    if out.exists():  # keep the figures of the parts not measured this time
        previous = json.loads(out.read_text())
        for part in ("overhead", "memory"):
            if part not in args.parts and part in previous:
                results[part] = previous[part]
                if part == "memory" and "memory_growth" in previous:
                    results["memory_growth"] = previous["memory_growth"]
    with atomic_path(out) as tmp_out:
        tmp_out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
