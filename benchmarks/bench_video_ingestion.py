"""Video ingestion throughput and memory: a 1080p clip of 10 s against one of 60 s.

Renders each clip with the synthetic generator (data/synthetic_video.py: 4-second shots in four
styles, on twos, 24 fps, H.264), then ingests it as `kedro run --env video` would (960x540
store, gaps 1 and 2, DIS pseudo flow = the stored prior, 2 workers) in a separate process, and
records triplets/s, CPU ms per triplet (all processes) and the peak RSS of that process tree.
Goal: peak RSS flat from 10 s to 60 s (frames are streamed; only a pending triplet's drawings
are held).

    python benchmarks/bench_video_ingestion.py [--seconds 10 60] [--workers 2]

Prints a table and writes benchmarks/results/video_ingestion.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from proctree import run_watched  # benchmarks/proctree.py

ROOT = Path(__file__).resolve().parents[1]
FPS, SHOT_SECONDS, STYLES = 24, 4, ("cel", "paper", "cg", "watercolor")


def render(path: Path, seconds: int, width: int, height: int) -> None:
    from animvfi_pipeline.data.synthetic_video import Shot, make_clip, write_clip

    n_shots = max(1, seconds // SHOT_SECONDS)
    shots = [Shot(100 + k, SHOT_SECONDS * FPS // 2, hold=2, style=STYLES[k % len(STYLES)]) for k in range(n_shots)]
    write_clip(make_clip(shots, width, height), path, fps=FPS, crf=18, preset="veryfast")


def child_ingest(args: argparse.Namespace) -> dict:
    from animvfi_pipeline.data.video_ingest import VideoIngestionConfig, write_video_triplets_h5
    from animvfi_pipeline.data.video_source import VideoFolder

    cfg = VideoIngestionConfig(size=(960, 540), gaps=(1, 2), workers=args.workers, dis_preset=args.dis,
                               dis_prior=args.dis)
    start, cpu0 = time.perf_counter(), time.process_time()
    result = write_video_triplets_h5(args.out, VideoFolder.scan(args.root), cfg, progress=False)
    return {"triplets": result.n_triplets, "seconds": time.perf_counter() - start,
            "main_cpu_s": time.process_time() - cpu0, "store_mb": args.out.stat().st_size / 2**20}


def measure(root: Path, out: Path, workers: int, dis: str) -> dict:
    cmd = [sys.executable, __file__, "_ingest", "--root", str(root), "--out", str(out), "--workers", str(workers),
           "--dis", dis]
    result, peak, children_cpu_s = run_watched(cmd, lambda p, top: p.pid != top)
    cpu_s = result.pop("main_cpu_s") + children_cpu_s
    return {**result, "triplets_per_s": result["triplets"] / result["seconds"],
            "cpu_ms_per_triplet": 1000 * cpu_s / result["triplets"], "peak_tree_rss_mb": peak / 2**20}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, nargs="+", default=[10, 60])
    ap.add_argument("--size", type=int, nargs=2, default=[1920, 1080])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--dis", default="fine", help="DIS preset of the pseudo flow and prior (conf/video: fine)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "video_ingestion.json")
    args = ap.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for seconds in args.seconds:
            root = Path(tmp) / f"clips_{seconds}"
            root.mkdir()
            t0 = time.perf_counter()
            render(root / "clip.mp4", seconds, *args.size)
            rendered = time.perf_counter() - t0
            run = {"clip_seconds": seconds, "clip_size": args.size, "render_s": rendered,
                   **measure(root, Path(tmp) / f"store_{seconds}.h5", args.workers, args.dis)}
            runs.append(run)
            print(f"{seconds:>3} s clip: {run['triplets']} triplets in {run['seconds']:.1f} s = "
                  f"{run['triplets_per_s']:.2f}/s, {run['cpu_ms_per_triplet']:.0f} CPU ms/triplet, "
                  f"peak RSS {run['peak_tree_rss_mb']:.0f} MB, store {run['store_mb']:.1f} MB "
                  f"(rendering took {rendered:.0f} s)", flush=True)
    growth = runs[-1]["peak_tree_rss_mb"] - runs[0]["peak_tree_rss_mb"]
    print(f"peak RSS growth {args.seconds[0]} s -> {args.seconds[-1]} s: {growth:+.0f} MB; "
          f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "store_size": [960, 540], "gaps": [1, 2], "workers": args.workers, "cpu_count": os.cpu_count(),
        "load_average_at_end": os.getloadavg(), "platform": platform.platform(), "runs": runs,
        "rss_growth_mb": growth,
    }, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_ingest":
        cp = argparse.ArgumentParser()
        cp.add_argument("mode")
        cp.add_argument("--root", type=Path)
        cp.add_argument("--out", type=Path)
        cp.add_argument("--workers", type=int)
        cp.add_argument("--dis")
        print(json.dumps(child_ingest(cp.parse_args())))
    else:
        main()
