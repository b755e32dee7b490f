"""flow_pretraining and vfi_training through a KedroSession, on a copy of the project with a tiny store."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from animvfi_pipeline.data.atd12k import scan_atd12k
from animvfi_pipeline.data.h5store import IngestionConfig, write_triplets_h5
from animvfi_pipeline.models.checkpoint import load_flownet, load_vfi_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fixtures_atd12k import make_atd12k_tree  # noqa: E402

# Small models, crops that fit 64x48 frames, one epoch each: the run takes seconds.
TINY = {
    "flow_model": {"scales": [8, 4], "channels": [8, 8], "depth": 1},
    "flow_training": {"data": {"crop": [32, 32]},
                      "loop": {"epochs": 1, "batch_size": 4, "num_workers": 0, "progress": False}},
    "vfi_model": {"widths": [8, 8], "head_channels": 4},
    "vfi_training": {"data": {"crop": [32, 32]},
                     "loop": {"epochs": 1, "batch_size": 4, "num_workers": 0, "progress": False}},
}


@pytest.fixture(scope="module")
def project(project_root, tmp_path_factory) -> Path:
    """A copy of the project's configuration with a tiny triplet store already ingested."""
    root = tmp_path_factory.mktemp("project")
    shutil.copy(project_root / "pyproject.toml", root)
    shutil.copy(project_root / ".telemetry", root)
    shutil.copytree(project_root / "conf", root / "conf", ignore=shutil.ignore_patterns("local"))
    (root / "conf" / "local").mkdir()
    (root / "src").mkdir()  # bootstrap_project wants it; the package itself is installed
    # No MLflow run here: what the logger sends to MLflow is tested in tests/training/test_tracking.py,
    # and logging the VFI model to MLflow (a project hook) would take longer than the training.
    mlflow_conf = yaml.safe_load((project_root / "conf" / "base" / "mlflow.yml").read_text())
    mlflow_conf["tracking"]["disable_tracking"]["pipelines"] = ["flow_pretraining", "vfi_training"]
    (root / "conf" / "local" / "mlflow.yml").write_text(yaml.safe_dump(mlflow_conf))
    raw = root / "raw"
    make_atd12k_tree(raw, n_train_clips=4, n_test=2, triplets_per_clip=2, size=(64, 48))
    store = root / "data" / "02_intermediate" / "triplets.h5"
    write_triplets_h5(store, scan_atd12k(raw), IngestionConfig(size=(64, 48), workers=0, val_fraction=0.25),
                      progress=False)
    return root


@pytest.fixture(scope="module")
def trained(project):
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    mp = pytest.MonkeyPatch()
    mp.chdir(project)  # relative paths in parameters (checkpoint_dir) and MLflow's database land here
    try:
        bootstrap_project(project)
        with KedroSession.create(project_path=project, runtime_params=TINY) as session:
            session.run(pipeline_names=["flow_pretraining", "vfi_training"])
    finally:
        mp.undo()
    return project


def test_the_pipelines_write_loadable_models(trained):
    flownet = load_flownet(trained / "data" / "06_models" / "flownet.pt")
    vfi = load_vfi_model(trained / "data" / "06_models" / "vfi.pt")
    assert list(flownet.cfg.channels) == [8, 8]
    assert vfi.cfg.flow.channels == flownet.cfg.channels  # the VFI model carries the pretrained flow net


def test_histories_have_one_row_per_epoch_with_validation_metrics(trained):
    flow = pd.read_csv(trained / "data" / "08_reporting" / "flow_training_history.csv")
    vfi = pd.read_csv(trained / "data" / "08_reporting" / "vfi_training_history.csv")
    assert list(flow["epoch"]) == [0, 1] and flow["val_epe"].notna().all()  # 0: the starting weights
    assert list(vfi["epoch"]) == [0, 1] and vfi["val_psnr"].notna().all()


def test_resumable_training_state_is_kept_beside_the_models(trained):
    for stage in ("flow", "vfi"):
        assert (trained / "data" / "06_models" / "checkpoints" / stage / "last.pt").is_file()
