"""What a training run sends to MLflow: stage-prefixed curves in the active run, or in MLFLOW_RUN_ID's."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from animvfi_pipeline.training.loop import TrainConfig, train
from animvfi_pipeline.training.tracking import MlflowLogger, NullLogger, get_logger, run_env

mlflow = pytest.importorskip("mlflow")


class Dicts(TensorDataset):
    def __getitem__(self, i):
        x, y = super().__getitem__(i)
        return {"x": x, "y": y}


class LinearTask:
    name, metric, mode, val_metrics = "toy", "mse", "min", ("mse",)

    def build_model(self):
        return nn.Linear(4, 1)

    def loss(self, model, batch):
        loss = ((model(batch["x"]) - batch["y"]) ** 2).mean()
        return loss, {"mse": loss.item()}

    def evaluate(self, model, batch):
        err = ((model(batch["x"]) - batch["y"]) ** 2).squeeze(1)
        return {"mse": err.sum(), "count": torch.tensor(len(err))}

    def make_checkpoint(self, model):
        return {"kind": "toy", "format_version": 1, "model_config": {}, "model": model.state_dict()}


@pytest.fixture(scope="module")
def database(tmp_path_factory):
    """One throwaway tracking database for the module (creating one takes seconds)."""
    tmp = tmp_path_factory.mktemp("mlflow")
    # A KedroSession earlier in this process (kedro-mlflow) may have left a run open in its own
    # tracking store; forget it here, or MlflowLogger would write into it.
    from mlflow.tracking.fluent import _active_run_stack

    _active_run_stack.get().clear()
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp / 'mlflow.db'}")
    experiment = mlflow.create_experiment("training-tests", artifact_location=str(tmp / "artifacts"))
    yield experiment
    mlflow.set_tracking_uri(previous)


@pytest.fixture
def tracking(database, monkeypatch):
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", database)
    yield mlflow.tracking.MlflowClient()
    if mlflow.active_run():
        mlflow.end_run()


def _data(n=16):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    return Dicts(x, x.sum(dim=1, keepdim=True))


def test_a_run_inside_an_active_mlflow_run_logs_curves_and_params_there(tracking):
    with mlflow.start_run() as run:
        logger = get_logger()
        assert isinstance(logger, MlflowLogger) and logger.run_id == run.info.run_id
        cfg = TrainConfig(epochs=3, batch_size=4, lr=1e-2, warmup_steps=1, device="cpu", log_every=2, progress=False)
        train(LinearTask(), _data(), _data(8), cfg, logger=logger)
    val = tracking.get_metric_history(run.info.run_id, "toy/val_mse")
    assert [m.step for m in val] == [0, 4, 8, 12]  # the starting weights, then one point per epoch
    assert [m.step for m in tracking.get_metric_history(run.info.run_id, "toy/train_loss")] == [2, 4, 6, 8, 10, 12]
    assert len(tracking.get_metric_history(run.info.run_id, "toy/epoch_train_loss")) == 3
    assert tracking.get_run(run.info.run_id).data.params["toy.train.epochs"] == "3"


def test_worker_processes_find_the_run_through_the_environment(tracking, monkeypatch):
    with mlflow.start_run() as run:
        env = run_env()
    assert env["MLFLOW_RUN_ID"] == run.info.run_id
    monkeypatch.setenv("MLFLOW_RUN_ID", env["MLFLOW_RUN_ID"])  # what launch() hands its workers
    get_logger().log_metrics({"vfi/val_psnr": 31.5}, step=7)
    [point] = tracking.get_metric_history(run.info.run_id, "vfi/val_psnr")
    assert (point.value, point.step) == (31.5, 7)


def test_without_a_run_nothing_is_logged_and_nothing_fails(tracking):
    logger = get_logger()
    assert not logger.active
    logger.log_metrics({"flow/train_loss": 1.0}, step=1)
    logger.log_params({"a": 1})
    assert mlflow.active_run() is None
    assert run_env() == {}
    assert isinstance(get_logger("none"), NullLogger)
