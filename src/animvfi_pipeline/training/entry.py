"""Command-line training entry for torchrun (several GPUs or several nodes), without Kedro.

Every process runs this module; torchrun sets RANK / LOCAL_RANK / WORLD_SIZE and the loop joins
the process group from them. Rank 0 writes the output checkpoint and history. For example, on
each of two nodes:

    torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint host0:29500 \\
        -m animvfi_pipeline.training.entry flow \\
        --store data/02_intermediate/triplets.h5 \\
        --params conf/base/parameters_flow_pretraining.yml conf/atd12k/parameters_flow_pretraining.yml \\
        --out data/06_models/flownet.pt

    torchrun ... -m animvfi_pipeline.training.entry vfi --flownet data/06_models/flownet.pt \\
        --store ... --params conf/base/parameters_vfi_training.yml conf/atd12k/parameters_vfi_training.yml \\
        --out data/06_models/vfi.pt

Later ``--params`` files override earlier ones key by key, as Kedro's environments do.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import yaml

from animvfi_pipeline.data.h5store import TripletStore
from animvfi_pipeline.models.checkpoint import load_checkpoint, save_checkpoint
from animvfi_pipeline.training.tasks import fit_flow, fit_vfi, flow_that_helps
from animvfi_pipeline.utils_io import atomic_path

log = logging.getLogger(__name__)


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m animvfi_pipeline.training.entry", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=["flow", "vfi"])
    parser.add_argument("--store", required=True, help="HDF5 triplet store")
    parser.add_argument("--params", nargs="+", required=True, help="parameters YAML file(s), later ones win")
    parser.add_argument("--out", required=True, help="output checkpoint (.pt)")
    parser.add_argument("--history", help="per-epoch history CSV (default: next to --out)")
    parser.add_argument("--flownet", help="flow pretraining checkpoint (vfi stage)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    params: dict[str, Any] = {}
    for path in args.params:
        params = _merge(params, yaml.safe_load(Path(path).read_text()) or {})
    store = TripletStore(args.store)
    if args.stage == "flow":
        result = fit_flow(store, params["flow_model"], params["flow_training"])
    elif params["vfi_training"].get("init_from") is not None:  # fine-tuning brings its own flow network
        result = fit_vfi(store, None, params["vfi_model"], params["vfi_training"])
    else:
        if not args.flownet:
            parser.error("the vfi stage needs --flownet (or vfi_training.init_from in --params)")
        flow_ckpt = load_checkpoint(args.flownet, "animvfi.flownet")
        if params["vfi_training"].get("flow_check", False):  # deterministic: every rank decides alike
            flow_ckpt, _ = flow_that_helps(store, flow_ckpt, params["vfi_model"])
        result = fit_vfi(store, flow_ckpt, params["vfi_model"], params["vfi_training"])
    if result is None:  # not rank 0
        return
    out = Path(args.out)
    save_checkpoint(out, result.checkpoint)
    history = Path(args.history) if args.history else out.with_name(f"{out.stem}_history.csv")
    with atomic_path(history) as tmp:
        result.history.to_csv(tmp, index=False)
    log.info("wrote %s and %s", out, history)


if __name__ == "__main__":
    main()
