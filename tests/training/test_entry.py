"""The torchrun entry point, run as one process: parameters files in, checkpoint and history out."""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from animvfi_pipeline.data.atd12k import scan_atd12k
from animvfi_pipeline.data.h5store import IngestionConfig, write_triplets_h5
from animvfi_pipeline.models.checkpoint import load_checkpoint
from animvfi_pipeline.training import entry

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fixtures_atd12k import make_atd12k_tree  # noqa: E402


@pytest.fixture
def store(tmp_path) -> Path:
    make_atd12k_tree(tmp_path / "raw", n_train_clips=3, n_test=1, triplets_per_clip=2, size=(48, 32))
    path = tmp_path / "triplets.h5"
    write_triplets_h5(path, scan_atd12k(tmp_path / "raw"), IngestionConfig(size=(48, 32), workers=0),
                      progress=False)
    return path


def test_both_stages_from_the_command_line(project_root, store, tmp_path, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    # Later files override earlier ones key by key: the project's base parameters, then a tiny run.
    tiny = tmp_path / "tiny.yml"
    loop = {"epochs": 1, "batch_size": 4, "num_workers": 0, "progress": False, "checkpoint_dir": None}
    tiny.write_text(yaml.safe_dump({
        "flow_model": {"scales": [8, 4], "channels": [8, 8], "depth": 1},
        "flow_training": {"data": {"crop": [32, 32]}, "loop": loop},
        "vfi_model": {"widths": [8, 8], "head_channels": 4},
        "vfi_training": {"data": {"crop": [32, 32]}, "loop": loop},
    }))
    base = project_root / "conf" / "base"
    flow_out, vfi_out = tmp_path / "out" / "flownet.pt", tmp_path / "out" / "vfi.pt"
    entry.main(["flow", "--store", str(store), "--out", str(flow_out),
                "--params", str(base / "parameters_flow_pretraining.yml"), str(tiny)])
    entry.main(["vfi", "--store", str(store), "--flownet", str(flow_out), "--out", str(vfi_out),
                "--params", str(base / "parameters_vfi_training.yml"), str(tiny)])

    flow = load_checkpoint(flow_out, "animvfi.flownet")
    assert flow["model_config"]["channels"] == [8, 8]
    assert flow["run_config"]["lr"] == yaml.safe_load((base / "parameters_flow_pretraining.yml").read_text())[
        "flow_training"]["loop"]["lr"]  # untouched keys come from the base file
    assert load_checkpoint(vfi_out, "animvfi.vfi")["model_config"]["flow"]["channels"] == [8, 8]
    assert list(pd.read_csv(tmp_path / "out" / "vfi_history.csv")["epoch"]) == [0, 1]  # the starting weights, then the epoch
