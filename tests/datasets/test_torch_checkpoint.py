"""TorchCheckpointDataset: what the catalog's flownet_model / vfi_model entries do."""
from __future__ import annotations

import pytest
import torch
from kedro.io import DatasetError

from animvfi_pipeline.datasets.torch_checkpoint import TorchCheckpointDataset
from animvfi_pipeline.errors import CheckpointError
from animvfi_pipeline.models.checkpoint import build_flownet, make_checkpoint
from animvfi_pipeline.models.flownet import FlowNet, FlowNetConfig

SMALL = FlowNetConfig(scales=(8, 4), channels=(8, 8), depth=1)


def _flow_checkpoint() -> dict:
    torch.manual_seed(0)
    return make_checkpoint("animvfi.flownet", FlowNet(SMALL), SMALL.to_dict(), epoch=3, best_metric=1.5)


def test_saved_checkpoint_loads_back_into_the_same_model(tmp_path):
    ds = TorchCheckpointDataset(str(tmp_path / "models" / "flownet.pt"), kind="animvfi.flownet")
    assert not ds.exists()
    ckpt = _flow_checkpoint()
    ds.save(ckpt)
    assert ds.exists()
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["flownet.pt"]  # no temporary left
    loaded = ds.load()
    assert loaded["epoch"] == 3 and loaded["best_metric"] == 1.5
    model = build_flownet(loaded)
    assert all(torch.equal(v, ckpt["model"][k]) for k, v in model.state_dict().items())


def test_a_checkpoint_of_the_other_kind_is_refused_on_save(tmp_path):
    ds = TorchCheckpointDataset(str(tmp_path / "vfi.pt"), kind="animvfi.vfi")
    with pytest.raises(DatasetError, match=r"vfi\.pt: refusing to save a 'animvfi\.flownet'") as err:
        ds.save(_flow_checkpoint())
    assert isinstance(err.value.__cause__, CheckpointError)  # Kedro wraps what the dataset raised
    assert not (tmp_path / "vfi.pt").exists()


def test_a_corrupt_file_is_a_checkpoint_error_naming_it(tmp_path):
    path = tmp_path / "flownet.pt"
    TorchCheckpointDataset(str(path), kind="animvfi.flownet").save(_flow_checkpoint())
    path.write_bytes(path.read_bytes()[:200])  # a truncated copy
    with pytest.raises(DatasetError, match="cannot be read") as err:
        TorchCheckpointDataset(str(path), kind="animvfi.flownet").load()
    assert isinstance(err.value.__cause__, CheckpointError)
    assert err.value.__cause__.path == str(path)
