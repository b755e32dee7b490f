"""Fine-tuning a trained model (`init_from`): it starts where that model is, keeps its
architecture, and names what it cannot read."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import torch

from animvfi_pipeline.data.atd12k import scan_atd12k
from animvfi_pipeline.data.h5store import IngestionConfig, TripletStore, write_triplets_h5
from animvfi_pipeline.errors import CheckpointError
from animvfi_pipeline.models.checkpoint import save_checkpoint
from animvfi_pipeline.training.tasks import FlowTask, StartingPoint, VFITask, fit_vfi

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fixtures_atd12k import make_atd12k_tree  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL_FLOW = {"scales": [8, 4], "channels": [8, 8], "depth": 1}
LOOP = {"epochs": 1, "batch_size": 4, "num_workers": 0, "progress": False, "lr": 1e-4}


def training_params(tmp: Path, **extra) -> dict:
    return {"data": {"crop": [32, 32]}, "tracking": "none",
            "loop": {**LOOP, "checkpoint_dir": str(tmp / "ckpt")}, **extra}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> TripletStore:
    tmp = tmp_path_factory.mktemp("store")
    make_atd12k_tree(tmp / "raw", n_train_clips=4, n_test=2, triplets_per_clip=2, size=(48, 32))
    write_triplets_h5(tmp / "s.h5", scan_atd12k(tmp / "raw"),
                      IngestionConfig(size=(48, 32), workers=0, val_fraction=0.25), progress=False)
    return TripletStore(tmp / "s.h5")


@pytest.fixture(scope="module")
def trained(store, tmp_path_factory) -> Path:
    """A vfi.pt trained from scratch for one epoch, with widths [8, 8]."""
    tmp = tmp_path_factory.mktemp("trained")
    flow = FlowTask(SMALL_FLOW)
    result = fit_vfi(store, flow.make_checkpoint(flow.build_model()), {"widths": [8, 8], "head_channels": 4},
                     training_params(tmp, loop={**LOOP, "lr": 1e-3, "checkpoint_dir": str(tmp / "ckpt")}))
    save_checkpoint(tmp / "vfi.pt", result.checkpoint)
    return tmp / "vfi.pt"


def test_fine_tuning_starts_at_the_models_own_validation_score_with_its_architecture(store, trained, tmp_path):
    start = torch.load(trained, weights_only=True)
    # The parameters ask for another architecture and give no flow network: the checkpoint decides.
    result = fit_vfi(store, None, {"widths": [16, 16], "head_channels": 8},
                     training_params(tmp_path, init_from=str(trained)))
    epoch0 = result.history[result.history["epoch"] == 0]["val_psnr"].item()
    assert epoch0 == pytest.approx(start["best_metric"], abs=1e-4)
    assert result.best_metric >= epoch0  # the starting weights are kept unless an epoch beats them
    assert result.checkpoint["model_config"] == start["model_config"]
    assert {k: v.shape for k, v in result.checkpoint["model"].items()} == \
        {k: v.shape for k, v in start["model"].items()}
    assert result.checkpoint["init_from"]["source"] == str(trained)  # evaluation scores the start beside it


def test_training_from_scratch_records_no_starting_point(store, trained):
    assert "init_from" not in torch.load(trained, weights_only=True)


def test_a_bad_init_from_names_the_path(tmp_path):
    missing = tmp_path / "nowhere" / "vfi.pt"
    with pytest.raises(CheckpointError, match=str(missing)):
        StartingPoint.of({"init_from": str(missing)}, "animvfi.vfi")
    not_ours = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, not_ours)
    with pytest.raises(CheckpointError, match=f"{not_ours}.*not an animvfi VFI checkpoint"):
        StartingPoint.of({"init_from": str(not_ours)}, "animvfi.vfi")


def test_init_from_resolves_an_mlflow_model_uri(trained, tmp_path):
    ckpt = torch.load(trained, weights_only=True)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # Logged by a separate process, as `kedro run` would: this process may hold another test's run.
    logged = subprocess.run(
        [sys.executable, "-c", "import sys, mlflow, torch\n"
         "from animvfi_pipeline.tracking.registry import log_vfi_model\n"
         "with mlflow.start_run():\n"
         "    print(log_vfi_model(torch.load(sys.argv[1], weights_only=True)))", str(trained)],
        # Only this test's tracking store: an earlier test of the session may have left MLFLOW_*
        # variables (a run id, an experiment) in this process's environment.
        env={**{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")},
             "MLFLOW_TRACKING_URI": uri, "MLFLOW_DISABLE_TELEMETRY": "true"},
        capture_output=True, text=True, timeout=600)
    assert logged.returncode == 0, logged.stderr[-2000:]
    model_uri = f"models:/{logged.stdout.split()[-1]}"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        vfi = VFITask({}, None, start=StartingPoint.of({"init_from": model_uri}, "animvfi.vfi")).build_model()
        flow_start = StartingPoint.of({"init_from": model_uri}, "animvfi.flownet")
        with pytest.raises(CheckpointError, match="models:/animvfi-nothing@champion"):
            StartingPoint.of({"init_from": "models:/animvfi-nothing@champion"}, "animvfi.vfi")
    finally:
        mlflow.set_tracking_uri(previous)
    assert all(torch.equal(v, ckpt["model"][k]) for k, v in vfi.state_dict().items())
    assert flow_start.checkpoint["model_config"] == ckpt["model_config"]["flow"]  # its flow network, for pretraining
