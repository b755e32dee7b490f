"""Ingestion throughput and memory at ATD-12K's size (960x540), against a decode-only floor.

Builds an ATD-12K-layout tree of N triplets (a few distinct cartoon-like triplets with exact
flow, drawn with OpenCV, hard-linked under many names; train JPEG / test PNG at the real
dataset's 5:1 ratio), then measures for N = 200 and N = 2000:

  * ingestion: write_triplets_h5 with 2 workers, flow from files ("gt"), in a separate process;
    triplets/s, CPU ms per triplet (all processes) and the peak RSS of that process tree;
  * the decode-only floor: the same frames decoded by 2 processes (cv2.imread), nothing else.

Goals: ingestion >= 60 % of the floor; peak RSS growth from 200 to 2000 triplets < 100 MB.
Also compares the default blosc-lz4 with lzf, gzip-1 and no compression, and flow "gt" with "dis", at N = 200.

    python benchmarks/bench_ingestion.py [--sizes 200 2000] [--workers 2] [--quick]

Prints a table and writes benchmarks/results/ingestion.json.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from proctree import run_watched  # benchmarks/proctree.py
from animvfi_pipeline.data import h5store
from animvfi_pipeline.data.atd12k import read_flow, read_image, scan_atd12k
from animvfi_pipeline.data.h5store import IngestionConfig, write_triplets_h5

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_COMPRESSION = IngestionConfig(size=(960, 540)).compression
DEFAULT_TILE = IngestionConfig(size=(960, 540)).chunk_tile
W, H = 960, 540
N_DISTINCT = 6


# --------------------------------------------------------------------------- the test tree


def render_triplet(seed: int, w: int = W, h: int = H):
    """Flat-colour shapes sliding over a painted background; exact flow where they are drawn."""
    rng = np.random.default_rng(seed)
    ys = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    top, bottom = rng.integers(60, 255, 3), rng.integers(0, 200, 3)
    background = np.broadcast_to(top * (1 - ys) + bottom * ys, (h, w, 3)).astype(np.uint8).copy()
    shapes = []
    for _ in range(5):
        shapes.append(
            dict(
                kind=rng.choice(["circle", "rect"]),
                centre=rng.uniform([0.15 * w, 0.15 * h], [0.85 * w, 0.85 * h]),
                radius=float(rng.uniform(0.05, 0.15) * h),
                colour=tuple(int(c) for c in rng.integers(0, 256, 3)),
                motion=rng.uniform(-0.06, 0.06, 2) * w,  # frame1 -> frame3 displacement
            )
        )
    frames, masks = [], {}
    for t in (0.0, 0.5, 1.0):
        img = background.copy()
        ids = np.full((h, w), -1, np.int16)  # top-most shape at each pixel
        for i, s in enumerate(shapes):
            cx, cy = s["centre"] + t * s["motion"]
            r = s["radius"]
            mask = np.zeros((h, w), np.uint8)
            if s["kind"] == "circle":
                cv2.circle(mask, (int(round(cx)), int(round(cy))), int(r), 1, -1)
            else:
                cv2.rectangle(mask, (int(cx - r), int(cy - 0.6 * r)), (int(cx + r), int(cy + 0.6 * r)), 1, -1)
            img[mask > 0] = s["colour"]
            outline = cv2.morphologyEx(mask, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
            img[outline > 0] = (20, 20, 20)
            ids[mask > 0] = i
        frames.append(img)
        masks[t] = ids
    motions = np.array([s["motion"] for s in shapes], np.float32)
    flows = []
    for t, sign in ((0.0, 1.0), (1.0, -1.0)):
        ids = masks[t]
        flow = np.zeros((2, h, w), np.float32)
        inside = ids >= 0
        flow[:, inside] = sign * motions[ids[inside]].T
        flows.append(flow)
    return frames, flows[0], flows[1]


def build_tree(root: Path, n: int) -> Path:
    """ATD-12K layout with n triplets hard-linked from N_DISTINCT rendered ones."""
    src = root / "_sources"
    sources = []
    for k in range(N_DISTINCT):
        d = src / str(k)
        d.mkdir(parents=True)
        frames, flo13, flo31 = render_triplet(k)
        for j, img in enumerate(frames, start=1):
            bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
            cv2.imwrite(str(d / f"frame{j}.jpg"), bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])
            cv2.imwrite(str(d / f"frame{j}.png"), bgr)
        np.save(d / "flo13.npy", flo13)
        np.save(d / "flo31.npy", flo31)
        (d / "ann.json").write_text(json.dumps({
            "motion_RoI": {"x": 100, "y": 80, "width": 400, "height": 300}, "level": k % 3,
            "image_size": [W, H], "general_motion_type": "translation", "behavior": "walking",
        }))
        sources.append(d)
    for i in range(n):
        d = sources[i % N_DISTINCT]
        test = i % 6 == 5
        clip, k = divmod(i, 4)
        if test:
            name, split_dir, ext = f"Disney_v9_{clip}_{k:06d}_s2", "test_2k_540p", "png"
            ann = root / "test_2k_annotations" / name
            ann.mkdir(parents=True)
            os.link(d / "ann.json", ann / f"{name}.json")
        else:
            name, split_dir, ext = f"Japan_v{clip // 100}_{clip}_{10 * k:06d}_s1", "train_10k", "jpg"
        tdir = root / split_dir / name
        tdir.mkdir(parents=True)
        for j in (1, 2, 3):
            os.link(d / f"frame{j}.{ext}", tdir / f"frame{j}.{ext}")
        fdir = root / "gt_flows" / split_dir / name
        fdir.mkdir(parents=True)
        for f in ("flo13.npy", "flo31.npy"):
            os.link(d / f, fdir / f)
    return root


def subset(records, n):
    step = max(len(records) // n, 1)
    return records[::step][:n]


# --------------------------------------------------------------------------- measurements
# Each measurement runs in its own process tree, sampled every 20 ms for resident memory (sum
# over the tree) and CPU time (per process). On a shared machine wall-clock rates swing with
# everyone else's load; CPU milliseconds per triplet do not, so both are reported.


def _decode(path: str) -> int:
    return cv2.imread(path, cv2.IMREAD_UNCHANGED).shape[0]


def _init() -> None:
    cv2.setNumThreads(1)


def child_floor(args) -> dict:
    """Decode-only floor: the same frames, the same kind of pool, nothing else."""
    paths = [str(p) for r in subset(scan_atd12k(args.root), args.n) for p in r.frame_paths]
    with mp.get_context("forkserver").Pool(args.workers, initializer=_init) as pool:
        pool.map(_decode, paths[: 2 * args.workers])  # start and warm the workers up
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in pool.imap(_decode, paths, chunksize=4):
            pass
        return {"triplets": args.n, "seconds": time.perf_counter() - t0, "main_cpu_s": time.process_time() - c0}


def child_ingest(args) -> dict:
    records = subset(scan_atd12k(args.root), args.n)
    cfg = IngestionConfig(size=(W, H), flow_source=args.flow, compression=args.compression,
                          workers=args.workers, val_fraction=0.1, extra_times=())
    t0, c0 = time.perf_counter(), time.process_time()
    result = write_triplets_h5(args.out, records, cfg, source_root=args.root, progress=False)
    return {"triplets": result.n_triplets, "seconds": time.perf_counter() - t0,
            "main_cpu_s": time.process_time() - c0, "store_mb": Path(args.out).stat().st_size / 2**20}


def measure(mode: str, root: Path, n: int, workers: int, flow: str = "gt", compression: str = DEFAULT_COMPRESSION,
            out: Path | None = None) -> dict:
    cmd = [sys.executable, __file__, mode, "--root", str(root), "--n", str(n), "--workers", str(workers),
           "--flow", flow, "--compression", compression, "--out", str(out)]
    # Pool workers are the forkserver's children; their whole life is work.
    result, peak, worker_cpu_s = run_watched(
        cmd, lambda p, top: p.pid != top and p.ppid() != top, poll_s=0.02)
    cpu_s = result.pop("main_cpu_s") + worker_cpu_s
    n_done = result["triplets"]
    if out is not None and out.exists():
        out.unlink()
    return {"n": n, "flow": flow, "compression": compression, "workers": workers, **result,
            "triplets_per_s": n_done / result["seconds"], "cpu_ms_per_triplet": 1000 * cpu_s / n_done,
            "peak_tree_rss_mb": peak / 2**20}


def stage_breakdown(records, compression: str = DEFAULT_COMPRESSION) -> dict:
    """CPU milliseconds per triplet of each ingestion stage, in one process."""
    layout = h5store._Layout.make((W, H), 0, True, compression, tile=DEFAULT_TILE)
    totals = dict.fromkeys(["decode_frames", "read_flows", "to_float16", "encode_chunks"], 0.0)
    for r in records:
        t0 = time.process_time()
        frames = np.stack([read_image(p) for p in r.frame_paths])
        t1 = time.process_time()
        flows = np.stack([read_flow(p, (H, W)) for p in r.gt_flow_paths])
        t2 = time.process_time()
        flows16 = h5store.to_float16(flows)
        t3 = time.process_time()
        h5store._encode_chunks(layout, {"frames": frames, "flows": flows16})
        t4 = time.process_time()
        for key, dt in zip(totals, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            totals[key] += dt
    return {k: 1000 * v / len(records) for k, v in totals.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[200, 2000])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="skip the gzip / no-compression / DIS comparisons")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "ingestion.json")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench_ingestion_"))
    store = work / "store.h5"
    try:
        n_max, n_min = max(args.sizes), min(args.sizes)
        t0 = time.perf_counter()
        root = build_tree(work / "atd12k", n_max)
        print(f"built a {n_max}-triplet tree at {W}x{H} in {time.perf_counter() - t0:.1f} s")
        stages = stage_breakdown(subset(scan_atd12k(root), 36))
        runs, floors = [], {}
        for n in sorted(args.sizes):
            floors[n] = measure("_floor", root, n, args.workers)
            runs.append(measure("_ingest", root, n, args.workers, "gt", DEFAULT_COMPRESSION, store))
        if not args.quick:
            for flow, compression in (("gt", "lzf"), ("gt", "gzip-1"), ("gt", "none"), ("dis", DEFAULT_COMPRESSION)):
                runs.append(measure("_ingest", root, n_min, args.workers, flow, compression, store))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    for r in runs:
        floor = floors[r["n"]]
        r["share_wall"] = r["triplets_per_s"] / floor["triplets_per_s"]
        r["share_cpu"] = floor["cpu_ms_per_triplet"] / r["cpu_ms_per_triplet"]
    main_runs = {r["n"]: r for r in runs if (r["flow"], r["compression"]) == ("gt", DEFAULT_COMPRESSION)}
    growth = main_runs[n_max]["peak_tree_rss_mb"] - main_runs[n_min]["peak_tree_rss_mb"]
    summary = {
        "share_of_decode_floor_wall": main_runs[n_max]["share_wall"],
        "share_of_decode_floor_cpu": main_runs[n_max]["share_cpu"],
        "rss_growth_mb": growth,
        "goal_share": 0.6,
        "goal_rss_growth_mb": 100,
    }

    print(f"\n{'N':>6} {'flow':>5} {'compr':>7} {'trip/s':>7} {'floor/s':>8} {'share':>6} {'CPU ms':>7} "
          f"{'floor ms':>8} {'share':>6} {'peak RSS':>9} {'MB/trip':>8}")
    for r in runs:
        f = floors[r["n"]]
        print(f"{r['n']:>6} {r['flow']:>5} {r['compression']:>7} {r['triplets_per_s']:>7.1f} "
              f"{f['triplets_per_s']:>8.1f} {r['share_wall']:>6.0%} {r['cpu_ms_per_triplet']:>7.1f} "
              f"{f['cpu_ms_per_triplet']:>8.1f} {r['share_cpu']:>6.0%} {r['peak_tree_rss_mb']:>8.0f}M "
              f"{r['store_mb'] / r['triplets']:>8.2f}")
    print("(share = ingestion / decode-only floor; wall: triplets/s, CPU: ms per triplet)")
    print("CPU ms per triplet by stage, one process: " + ", ".join(f"{k} {v:.1f}" for k, v in stages.items()))
    print(f"\nat N={n_max}: {summary['share_of_decode_floor_wall']:.0%} of the decode-only floor by wall "
          f"clock, {summary['share_of_decode_floor_cpu']:.0%} by CPU time (goal >= 60%)")
    print(f"peak RSS growth {n_min} -> {n_max}: {growth:+.0f} MB (goal < 100 MB)")
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "frame_size": [W, H], "workers": args.workers, "cpu_count": os.cpu_count(),
        "load_average_at_end": os.getloadavg(), "platform": platform.platform(),
        "decode_floor": {str(k): v for k, v in floors.items()}, "runs": runs, "summary": summary,
        "stage_cpu_ms_per_triplet": stages,
    }, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in ("_ingest", "_floor"):
        cp = argparse.ArgumentParser()
        cp.add_argument("mode")
        cp.add_argument("--root", type=Path)
        cp.add_argument("--n", type=int)
        cp.add_argument("--workers", type=int)
        cp.add_argument("--flow")
        cp.add_argument("--compression")
        cp.add_argument("--out", type=Path)
        child_args = cp.parse_args()
        run = child_ingest if child_args.mode == "_ingest" else child_floor
        print(json.dumps(run(child_args)))
    else:
        main()
