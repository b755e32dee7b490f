"""Training-data feed at ATD-12K's size: samples/s per DataLoader core at 256x256 crops.

Builds a 960x540 store from the project's synthetic generator (cartoon triplets; flows as the real
training split has them: OpenCV DIS pseudo-flow at `medium`, `--flow gt` for the exact ones), once
per chunk layout: one chunk per triplet (`chunk_tile: null`, the layout before issue 13) and
128x128 tiles (`chunk_tile: 128`, the default). Both hold the DIS `fast` prior (`dis_prior: fast`,
as conf/atd12k ingests). Then, for every layout and prior setting:

  none           no prior (a FlowNet with init: zero)
  dis-fast       DIS `fast` on each sample's crop, in the worker (prior_from: frames)
  dis-medium     DIS `medium` likewise (conf/base's preset)
  dis-fast-half  DIS `fast` on the crop at half size, upsampled: the "coarser scale" option, measured
                 here only (the flow net would have to compute its prior the same way at inference)
  stored         the store's precomputed whole-frame `fast` prior, cropped (prior_from: store)

it measures, with one thread as in a DataLoader worker:

  * CPU ms per sample in this process (time.process_time: the robust figure on a shared machine,
    where wall-clock rates follow everyone else's load) for flow pretraining (flows read) and for
    VFI training (flows=False); samples/s per loader core = 1000 / that;
  * a DataLoader (batch 16) with 1 and 2 workers: wall samples/s, and the workers' own CPU
    milliseconds per sample (psutil; collation into shared memory included), in steady state.
    Samples are `compact` (uint8 frames, float16 flows) as the training tasks make them; one
    extra run per layout with float32 samples shows what the shared memory costs;
  * projected N workers: N x samples/s per core (samples are independent; holds while the disk and
    the training process keep up);
  * cores per GPU: a GPU step rate divided by samples/s per core.

The GPU rate (`--gpu-rate`, default 422 samples/s) comes from RIFE, a published compact VFI model:
its README states "30+FPS for 2X 720p interpolation on a 2080Ti GPU" (hzwer/ECCV2022-RIFE), i.e.
30 x 1280 x 720 = 27.6 Mpixel/s through the network, or 27.6e6 / (256 x 256) = 422 forward passes
of a 256x256 crop per second. A training step costs about three forward passes (forward and
backward), so that GPU trains at ~140 samples/s; a current data-centre GPU is several times a
2080 Ti, which puts a compact model at a few hundred samples/s. 422/s is the rate the loader must
sustain per GPU. (RIFE's own training setup, in the same README: "16 CPUs, 4 GPUs" -- 4 cores per
GPU, the budget of issue 13.)

    python benchmarks/bench_feed.py [--n-train 40] [--flow dis|gt] [--gpu-rate 422] [--tiles 128 64]

Prints tables and writes benchmarks/results/feed.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import h5py
import numpy as np
import psutil
import torch
from torch.utils.data import DataLoader, RandomSampler

from animvfi_pipeline.data.atd12k import scan_atd12k
from animvfi_pipeline.data.flow import dis_flow_pair
from animvfi_pipeline.data.h5store import IngestionConfig, TripletStore, write_triplets_h5
from animvfi_pipeline.data.synthetic import SyntheticConfig, write_synthetic_atd12k
from animvfi_pipeline.data.torch_dataset import TripletDataset

ROOT = Path(__file__).resolve().parents[1]
W, H = 960, 540
CROP = (256, 256)
STORED_PRESET = "fast"  # conf/atd12k: flow_model.dis_preset and ingestion.dis_prior
GOAL_PER_CORE = 150.0
PRIORS = ("none", "dis-fast", "dis-medium", "dis-fast-half", "stored")
BATCH = 16


class HalfScalePrior(TripletDataset):
    """DIS on the crop at half size, upsampled: what "a prior at a coarser scale" would cost."""

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        sample = super().__getitem__(i)
        a, b = (sample[k].permute(1, 2, 0).numpy() for k in ("img0", "img1"))  # compact: uint8
        h, w = a.shape[:2]
        small = dis_flow_pair(*(cv2.resize(x, (w // 2, h // 2), interpolation=cv2.INTER_AREA) for x in (a, b)),
                              STORED_PRESET)
        up = np.stack([cv2.resize(c, (w, h), interpolation=cv2.INTER_LINEAR) * 2.0 for c in small])
        sample["prior"] = torch.from_numpy(up)
        return sample


def make_dataset(store: TripletStore, prior: str, flows: bool, compact: bool = True) -> TripletDataset:
    # compact: uint8 frames and float16 stored flows, as the training tasks build their datasets
    common = dict(crop=CROP, augment=True, flows=flows, compact=compact)
    if prior == "none":
        return TripletDataset(store, "train", **common)
    if prior == "dis-fast-half":
        return HalfScalePrior(store, "train", **common)
    if prior == "stored":
        return TripletDataset(store, "train", prior=STORED_PRESET, prior_from="store", **common)
    return TripletDataset(store, "train", prior=prior.split("-")[1], prior_from="frames", **common)


# --------------------------------------------------------------------------- the store


def build_stores(work: Path, n_train: int, flow: str, tiles: list[int | None]) -> tuple[dict, dict]:
    raw = work / "atd12k"
    t0 = time.perf_counter()
    write_synthetic_atd12k(raw, SyntheticConfig(width=W, height=H, n_train=n_train, n_test=2, extra_times=()),
                           progress=False)
    print(f"generated {n_train} + 2 synthetic {W}x{H} triplets in {time.perf_counter() - t0:.0f} s")
    records = scan_atd12k(raw)
    stores, sizes = {}, {}
    for tile in tiles:
        path = work / f"tile_{tile}.h5"
        cfg = IngestionConfig(size=(W, H), flow_source=flow, dis_preset="medium", val_fraction=0.0, workers=2,
                              extra_times=(), chunk_tile=tile, dis_prior=STORED_PRESET)
        write_triplets_h5(path, records, cfg, progress=False)
        stores[_layout(tile)] = store = TripletStore(path)
        with h5py.File(path, "r") as f:
            sizes[_layout(tile)] = {name: f[name].id.get_storage_size() / len(store) / 2**20
                                    for name in ("frames", "flows", "prior")}
    return stores, sizes


def _layout(tile: int | None) -> str:
    return "whole" if tile is None else f"tile{tile}"


# --------------------------------------------------------------------------- measurements


def per_sample_cpu_ms(ds: TripletDataset, epochs: int) -> tuple[float, float]:
    """(CPU ms, wall ms) per sample, this process, one thread, after a warm-up."""
    for i in range(min(4, len(ds))):
        ds[i]
    n, c0, w0 = 0, time.process_time(), time.perf_counter()
    for epoch in range(1, epochs + 1):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            ds[i]
            n += 1
    return 1000 * (time.process_time() - c0) / n, 1000 * (time.perf_counter() - w0) / n


def read_cost_ms(store: TripletStore, reads: int = 60) -> dict[str, float]:
    """CPU ms to read one 256x256 window of each dataset (decompression included)."""
    rng = np.random.default_rng(0)
    out = {}
    for name in ("frames", "flows", "prior"):
        read = getattr(store, name)
        c0 = time.process_time()
        for k in range(reads):
            top, left = int(rng.integers(0, H - CROP[0] + 1)), int(rng.integers(0, W - CROP[1] + 1))
            read(k % len(store), (top, left, *CROP))
        out[name] = 1000 * (time.process_time() - c0) / reads
    return out


def loader_rate(ds: TripletDataset, workers: int, batches: int) -> dict[str, float]:
    """Steady-state wall samples/s and worker CPU ms per sample of a DataLoader."""
    warmup = 2 * workers + 1  # workers started and their prefetch queues full
    # One long pass (samples drawn with replacement): no epoch restarts inside the measurement.
    sampler = RandomSampler(ds, replacement=True, num_samples=BATCH * (warmup + batches + 2 * workers + 2),
                            generator=torch.Generator().manual_seed(0))
    loader = DataLoader(ds, batch_size=BATCH, sampler=sampler, num_workers=workers)
    me = psutil.Process()

    def worker_cpu() -> float:
        total = 0.0
        for child in me.children():
            try:
                t = child.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total

    got, start = 0, (0.0, 0.0)
    for _ in loader:
        got += 1
        if got == warmup:
            start = (time.perf_counter(), worker_cpu())
        if got == warmup + batches:
            # Both marks in steady state (prefetch queues full), so work in flight cancels out.
            wall, cpu = time.perf_counter() - start[0], worker_cpu() - start[1]
            break
    del loader
    n = batches * BATCH
    return {"samples_per_s_wall": n / wall, "worker_cpu_ms_per_sample": 1000 * cpu / n}


def dis_ingestion_cost_ms(store: TripletStore, preset: str, n: int = 4) -> float:
    """CPU ms per triplet that `dis_prior` adds to ingestion (DIS both ways on 960x540)."""
    c0 = time.process_time()
    for i in range(n):
        frames = store.frames(i)
        dis_flow_pair(frames[0], frames[2], preset)
    return 1000 * (time.process_time() - c0) / n


# --------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-train", type=int, default=40, help="synthetic training triplets in the store")
    ap.add_argument("--flow", choices=["dis", "gt"], default="dis", help="stored flows: DIS pseudo-flow or exact")
    ap.add_argument("--tiles", type=int, nargs="*", default=[128], help="tile sizes to compare with whole chunks")
    ap.add_argument("--epochs", type=int, default=3, help="passes over the store per CPU measurement")
    ap.add_argument("--batches", type=int, default=12, help="measured DataLoader batches (of 16)")
    ap.add_argument("--gpu-rate", type=float, default=422.0, help="samples/s one GPU trains at (see above)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "feed.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    # Before any OpenCV call: forked DataLoader workers inherit one thread each. Resizing the
    # pool inside a forked worker instead can hang (see training/loop.py _seed_worker).
    cv2.setNumThreads(1)

    work = Path(tempfile.mkdtemp(prefix="bench_feed_"))
    try:
        stores, sizes = build_stores(work, args.n_train, args.flow, [None, *args.tiles])
        results = []
        for layout, store in stores.items():
            reads = read_cost_ms(store)
            for prior in PRIORS:
                row = {"layout": layout, "prior": prior}
                for stage, flows in (("flow", True), ("vfi", False)):
                    cpu, wall = per_sample_cpu_ms(make_dataset(store, prior, flows), args.epochs)
                    row[f"{stage}_cpu_ms"], row[f"{stage}_wall_ms"] = cpu, wall
                    row[f"{stage}_per_core"] = 1000 / cpu
                for workers in (1, 2):
                    row[f"loader_{workers}w"] = loader_rate(make_dataset(store, prior, True), workers, args.batches)
                results.append(row)
                print(f"  {layout:>8} {prior:>13}: flow {row['flow_cpu_ms']:5.2f} ms, vfi {row['vfi_cpu_ms']:5.2f} ms "
                      f"CPU per sample", flush=True)
            for row in results[-len(PRIORS):]:
                row["read_ms"] = reads
        # The same feed with float32 samples (compact=False): what shared memory costs the workers.
        float_samples = {layout: loader_rate(make_dataset(store, "stored", True, compact=False), 2, args.batches)
                         for layout, store in stores.items()}
        dis_cost = {p: dis_ingestion_cost_ms(next(iter(stores.values())), p) for p in ("fast", "medium")}
    finally:
        for store in locals().get("stores", {}).values():
            store.close()
        shutil.rmtree(work, ignore_errors=True)

    load = os.getloadavg()[0]
    print(f"\n{W}x{H} store ({args.n_train} synthetic triplets, {args.flow} flows), {CROP[0]}x{CROP[1]} crops, "
          f"augment on, one thread per worker; load average {load:.1f} on {os.cpu_count()} CPUs")
    print("\nstored MB per triplet: " + "; ".join(
        f"{layout}: " + ", ".join(f"{k} {v:.2f}" for k, v in s.items()) for layout, s in sizes.items()))
    print("CPU ms to read one 256x256 window: " + "; ".join(
        f"{r['layout']}: " + ", ".join(f"{k} {v:.2f}" for k, v in r["read_ms"].items())
        for r in results if r["prior"] == "none"))
    print(f"\n{'layout':>8} {'prior':>13} | {'flow: CPU ms':>12} {'/s/core':>7} | {'vfi: CPU ms':>11} {'/s/core':>7} |"
          f" {'1 worker /s':>11} {'CPU ms':>6} | {'2 workers /s':>12} {'CPU ms':>6} | {'N=8 /s':>6} |"
          f" {'cores/GPU':>9}")
    for r in results:
        one, two = r["loader_1w"], r["loader_2w"]
        print(f"{r['layout']:>8} {r['prior']:>13} | {r['flow_cpu_ms']:>12.2f} {r['flow_per_core']:>7.0f} |"
              f" {r['vfi_cpu_ms']:>11.2f} {r['vfi_per_core']:>7.0f} | {one['samples_per_s_wall']:>11.0f}"
              f" {one['worker_cpu_ms_per_sample']:>6.2f} | {two['samples_per_s_wall']:>12.0f}"
              f" {two['worker_cpu_ms_per_sample']:>6.2f} | {8 * r['flow_per_core']:>6.0f} |"
              f" {args.gpu_rate / r['flow_per_core']:>9.1f}")
    print(f"(/s/core = 1000 / CPU ms per sample, in this process; loader columns: wall samples/s and the workers'\n"
          f" CPU ms per sample incl. collation; N=8: projected, 8 x /s/core; cores/GPU = {args.gpu_rate:.0f} / flow /s/core)")
    best = {r["layout"]: r for r in results if r["prior"] == "stored"}
    goal_row = best.get("tile128", next(iter(best.values())))
    verdict = "met" if goal_row["flow_per_core"] >= GOAL_PER_CORE else "NOT met"
    print(f"\ngoal: >= {GOAL_PER_CORE:.0f} samples/s per core with the conf/atd12k prior (DIS fast): "
          f"{goal_row['layout']} + stored prior gives {goal_row['flow_per_core']:.0f}/s (flow stage), "
          f"{goal_row['vfi_per_core']:.0f}/s (VFI stage) -> {verdict}")
    print("stored prior, 2 workers, float32 samples instead of compact ones: " + "; ".join(
        f"{layout}: {r['samples_per_s_wall']:.0f}/s, {r['worker_cpu_ms_per_sample']:.2f} worker CPU ms per sample"
        for layout, r in float_samples.items()))
    print("DIS prior at ingestion, CPU ms per 960x540 triplet (both directions): "
          + ", ".join(f"{k} {v:.0f}" for k, v in dis_cost.items()))

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "frame_size": [W, H], "crop": list(CROP), "n_train": args.n_train, "flow": args.flow,
        "gpu_rate_samples_per_s": args.gpu_rate,
        "gpu_rate_source": "RIFE README (hzwer/ECCV2022-RIFE): 30 fps 2x 720p on a 2080 Ti = 27.6 Mpx/s "
                           "= 422 forward passes of 256x256 per second",
        "goal_samples_per_s_per_core": GOAL_PER_CORE, "stored_mb_per_triplet": sizes, "results": results,
        "stored_prior_float32_samples_2_workers": float_samples,
        "dis_ingestion_cpu_ms_per_triplet": dis_cost, "load_average_at_end": os.getloadavg(),
        "cpu_count": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
    }, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
