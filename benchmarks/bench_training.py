"""Training throughput of the VFI task on CPU: samples/s at 256x256 crops, batch 4, and the share
of step time spent waiting for the DataLoader (goal: under 10 %).

Model and DataLoader workers as in conf/base/parameters_{flow_pretraining,vfi_training}.yml; the
flow network is untrained (its weights do not change the cost). The store is a synthetic one at
384x288 (256x256 crops need frames at least that large), built once into a temporary directory.

    python benchmarks/bench_training.py [--steps 12] [--workers N]

Prints the figures and writes benchmarks/results/training.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
import yaml

from animvfi_pipeline.data.atd12k import scan_atd12k
from animvfi_pipeline.data.h5store import IngestionConfig, TripletStore, write_triplets_h5
from animvfi_pipeline.data.synthetic import SyntheticConfig, write_synthetic_atd12k
from animvfi_pipeline.training.loop import TrainConfig, train
from animvfi_pipeline.training.tasks import FlowTask, VFITask, make_datasets

ROOT = Path(__file__).resolve().parents[1]
CROP, BATCH, WARMUP_STEPS = 256, 4, 2


class StepRecorder:
    """A MetricLogger that keeps the per-step throughput figures the loop reports."""

    active = False

    def __init__(self):
        self.steps: list[dict[str, float]] = []

    def log_params(self, params):
        pass

    def log_metrics(self, metrics, step):
        if "vfi/samples_per_s" in metrics:
            # process_time counts every thread of this process: the CPU cost, whatever the load.
            self.steps.append({"step": step, "samples_per_s": metrics["vfi/samples_per_s"],
                               "data_wait_share": metrics["vfi/data_wait_share"], "cpu_s": time.process_time()})

    def log_artifact(self, path):
        pass

    def log_figure(self, fig, name):
        pass


def build_store(workdir: Path, n_train: int) -> TripletStore:
    raw = workdir / "atd12k"
    write_synthetic_atd12k(raw, SyntheticConfig(width=384, height=288, n_train=n_train, n_test=4), progress=False)
    path = workdir / "triplets.h5"
    write_triplets_h5(path, scan_atd12k(raw), IngestionConfig(size=(384, 288), flow_source="gt", workers=2),
                      progress=False)
    return TripletStore(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=12, help="training steps measured (after 2 warm-up steps)")
    parser.add_argument("--workers", type=int, help="DataLoader workers (default: as in conf/base)")
    parser.add_argument("--crop", type=int, default=CROP, help="square crop size")
    parser.add_argument("--batch", type=int, default=BATCH, help="batch size")
    args = parser.parse_args()

    flow_conf = yaml.safe_load((ROOT / "conf/base/parameters_flow_pretraining.yml").read_text())
    vfi_conf = yaml.safe_load((ROOT / "conf/base/parameters_vfi_training.yml").read_text())
    workers = vfi_conf["vfi_training"]["loop"]["num_workers"] if args.workers is None else args.workers
    steps = args.steps + WARMUP_STEPS

    with tempfile.TemporaryDirectory(prefix="bench_training_") as tmp:
        started = time.perf_counter()
        store = build_store(Path(tmp), n_train=max(16, steps * args.batch // 2))  # val carves out ~10 %
        print(f"built a {store.width}x{store.height} store of {len(store)} triplets in "
              f"{time.perf_counter() - started:.0f} s")

        flownet = FlowTask(flow_conf["flow_model"]).build_model()
        flow_ckpt = FlowTask(flow_conf["flow_model"]).make_checkpoint(flownet)
        task = VFITask(vfi_conf["vfi_model"], flow_ckpt, vfi_conf["vfi_training"]["loss"])
        data = {**vfi_conf["vfi_training"]["data"], "crop": [args.crop, args.crop]}
        train_set, val_set = make_datasets(store, data, seed=0, flows=False, flow_config=task.config.flow)
        val_set = torch.utils.data.Subset(val_set, [])  # throughput only
        cfg = TrainConfig(epochs=1, batch_size=args.batch, lr=1e-4, warmup_steps=1, device="cpu",
                          num_workers=workers, log_every=1, max_steps_per_epoch=steps, progress=False)
        recorder = StepRecorder()
        result = train(task, train_set, val_set, cfg, logger=recorder)

    measured = recorder.steps[WARMUP_STEPS:]
    rate = statistics.median(s["samples_per_s"] for s in measured)
    wait = statistics.mean(s["data_wait_share"] for s in measured)
    cpu_per_step = statistics.median(b["cpu_s"] - a["cpu_s"] for a, b in zip(recorder.steps[WARMUP_STEPS - 1 :], measured))
    figures = {
        "task": "vfi",
        "crop": [args.crop, args.crop],
        "batch_size": args.batch,
        "num_workers": workers,
        "steps_measured": len(measured),
        "samples_per_s_median": round(rate, 2),
        "step_s_median": round(args.batch / rate, 3),
        "data_wait_share_mean": round(wait, 4),
        "data_wait_goal": 0.10,
        "data_wait_ok": wait < 0.10,
        "epoch_samples_per_s": round(float(result.history["samples_per_s"].iloc[0]), 2),
        "cpu_s_per_step": round(cpu_per_step, 3),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
    }
    print(f"VFI training, CPU, {args.crop}x{args.crop} crops, batch {args.batch}, {workers} DataLoader worker(s):")
    print(f"  {rate:.2f} samples/s ({args.batch / rate:.2f} s per step), "
          f"{100 * wait:.1f} % of step time waiting for data (goal < 10 %)")
    print(f"  {cpu_per_step:.2f} CPU s per step in the training process; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (wall figures suffer on a shared machine)")
    out = ROOT / "benchmarks" / "results" / "training.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
