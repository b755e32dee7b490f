"""Peak RSS of the training process: flow pretraining and VFI training as `make run` runs them.

Both stages with conf/base's model, data and loop settings on the store `make run` ingested
(data/02_intermediate/triplets.h5, 480x270 with the stored DIS prior), cut to ``--steps`` steps of
one epoch: validation (at the start and after the epoch) runs on the whole validation split at
full frame, which is where memory peaked. RSS is sampled every 0.2 s in a thread.

    python benchmarks/bench_training_memory.py [--store data/02_intermediate/triplets.h5] [--steps 5]

Prints the peak per stage and writes benchmarks/results/training_memory.json.
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import threading
import time
from pathlib import Path

import psutil
import yaml

from animvfi_pipeline.data.h5store import TripletStore
from animvfi_pipeline.training.tasks import fit_flow, fit_vfi

ROOT = Path(__file__).resolve().parents[1]


class PeakRSS:
    """The largest RSS of this process seen while the block runs."""

    def __enter__(self):
        self.peak, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        proc = psutil.Process()
        while not self._stop.is_set():
            self.peak = max(self.peak, proc.memory_info().rss)
            time.sleep(0.2)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def params(name: str) -> dict:
    return yaml.safe_load((ROOT / "conf" / "base" / f"parameters_{name}.yml").read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, default=ROOT / "data" / "02_intermediate" / "triplets.h5")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "training_memory.json")
    args = ap.parse_args()
    if not args.store.exists():
        raise SystemExit(f"{args.store}: no store; run `make run` (or `kedro run --pipelines data_ingestion`) first")
    store = TripletStore(args.store)
    results = {"store": str(args.store), "steps": args.steps, "machine": platform.processor() or platform.machine()}
    with tempfile.TemporaryDirectory() as tmp:
        def stage(name: str, section: str) -> dict:
            p = params(name)[section]
            p["tracking"] = "none"
            p["loop"].update(epochs=1, max_steps_per_epoch=args.steps, checkpoint_dir=f"{tmp}/{section}")
            return p

        flow_model = params("flow_pretraining")["flow_model"]
        with PeakRSS() as flow_peak:
            flow = fit_flow(store, flow_model, stage("flow_pretraining", "flow_training"))
        vfi_params = params("vfi_training")
        with PeakRSS() as vfi_peak:
            fit_vfi(store, flow.checkpoint, vfi_params["vfi_model"], stage("vfi_training", "vfi_training"))
    results["flow_peak_rss_mb"] = round(flow_peak.peak / 2**20)
    results["vfi_peak_rss_mb"] = round(vfi_peak.peak / 2**20)
    print(f"peak RSS: flow pretraining {results['flow_peak_rss_mb']} MB, VFI training {results['vfi_peak_rss_mb']} MB "
          f"({args.steps} steps and two whole-split validations each)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(results, indent=2) + "\n")
    tmp_out.replace(args.out)


if __name__ == "__main__":
    main()
