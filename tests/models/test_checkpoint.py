"""Checkpoints: exact round trip, atomic writes, and a clear CheckpointError naming the file for
every way a checkpoint can be unusable -- never a silently random model."""
from __future__ import annotations

import pytest
import torch

from animvfi_pipeline.errors import CheckpointError
from animvfi_pipeline.models.checkpoint import (
    build_vfi_model,
    load_checkpoint,
    load_flownet,
    load_vfi_model,
    make_checkpoint,
    save_checkpoint,
)
from animvfi_pipeline.models.flownet import FlowNet, FlowNetConfig
from animvfi_pipeline.models.vfi import VFIConfig, VFIModel

FLOW = FlowNetConfig(channels=(8, 8, 8), depth=1)
CFG = VFIConfig(backbone="transunet", flow=FLOW, widths=(8, 16, 16, 16), head_channels=8,
                transformer_dim=16, transformer_heads=2, transformer_layers=1)



@pytest.fixture
def vfi_file(tmp_path):
    torch.manual_seed(0)
    model = VFIModel(CFG)
    for p in model.parameters():  # make every weight distinctive (zero-initialised heads too)
        torch.nn.init.normal_(p, std=0.05)
    opt = torch.optim.Adam(model.parameters())
    path = tmp_path / "models" / "vfi.pt"
    save_checkpoint(path, make_checkpoint("animvfi.vfi", model, CFG.to_dict(), optimizer=opt.state_dict(),
                                          epoch=3, step=120, best_metric=31.5, run_config={"lr": 1e-3}))
    return path, model


def test_vfi_round_trip_gives_the_same_model(vfi_file, tmp_path):
    path, model = vfi_file
    loaded = load_vfi_model(path)
    assert not loaded.training
    assert loaded.cfg == CFG
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    img0, img1 = torch.rand(1, 3, 40, 56), torch.rand(1, 3, 40, 56)
    assert torch.equal(loaded.inference(img0, img1, 0.5), model.eval().inference(img0, img1, 0.5))
    ckpt = load_checkpoint(path, "animvfi.vfi")
    assert (ckpt["epoch"], ckpt["step"], ckpt["best_metric"], ckpt["run_config"]) == (3, 120, 31.5, {"lr": 1e-3})
    assert "state" in ckpt["optimizer"]
    assert [p.name for p in path.parent.iterdir()] == ["vfi.pt"]  # no temporary file left behind


def test_flownet_round_trip(tmp_path):
    net = FlowNet(FLOW)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05)
    path = tmp_path / "flownet.pt"
    save_checkpoint(path, make_checkpoint("animvfi.flownet", net, FLOW.to_dict()))
    loaded = load_flownet(path)
    assert loaded.cfg == FLOW and not loaded.training
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in net.state_dict().items())


def test_a_failed_save_leaves_nothing_behind(tmp_path):
    path = tmp_path / "vfi.pt"
    ckpt = make_checkpoint("animvfi.vfi", VFIModel(CFG), CFG.to_dict(), run_config={"bad": lambda: 0})
    with pytest.raises(Exception):
        save_checkpoint(path, ckpt)
    assert list(tmp_path.iterdir()) == []


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(CheckpointError, match=r"nothing\.pt: checkpoint file not found"):
        load_vfi_model(tmp_path / "nothing.pt")


def test_a_truncated_file_is_named(vfi_file):
    path, _ = vfi_file
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"vfi\.pt: cannot be read as a checkpoint"):
        load_vfi_model(path)


def test_somebody_elses_file_is_refused(tmp_path):
    path = tmp_path / "resnet.pt"
    torch.save({"conv1.weight": torch.zeros(2)}, path)  # a bare state dict
    with pytest.raises(CheckpointError, match=r"resnet\.pt: not an animvfi VFI checkpoint"):
        load_vfi_model(path)
    torch.save([1, 2, 3], path)
    with pytest.raises(CheckpointError, match="not an animvfi VFI checkpoint"):
        load_vfi_model(path)


def test_a_pickled_object_is_refused_not_executed(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"kind": "animvfi.vfi", "payload": FlowNetConfig()}, path)  # needs unpickling a class
    with pytest.raises(CheckpointError, match=r"evil\.pt: cannot be read"):
        load_vfi_model(path)


def test_a_flow_checkpoint_is_not_a_vfi_checkpoint(tmp_path):
    path = tmp_path / "flownet.pt"
    save_checkpoint(path, make_checkpoint("animvfi.flownet", FlowNet(FLOW), FLOW.to_dict()))
    with pytest.raises(CheckpointError, match="not an animvfi VFI checkpoint: kind is 'animvfi.flownet'"):
        load_vfi_model(path)


def test_a_future_format_is_refused(vfi_file):
    path, _ = vfi_file
    ckpt = load_checkpoint(path, "animvfi.vfi")
    save_checkpoint(path, {**ckpt, "format_version": 2})
    with pytest.raises(CheckpointError, match="unsupported format_version 2"):
        load_vfi_model(path)


def test_weights_that_do_not_fit_the_config_are_an_error(vfi_file):
    path, _ = vfi_file
    ckpt = load_checkpoint(path, "animvfi.vfi")
    wider = {**ckpt, "model_config": {**ckpt["model_config"], "widths": [8, 16, 16, 32]}}
    with pytest.raises(CheckpointError, match=r"vfi\.pt: weights do not match model config:.*wrong shape"):
        build_vfi_model(wider, source=path)
    other = {**ckpt, "model_config": {**ckpt["model_config"], "backbone": "unet"}}
    with pytest.raises(CheckpointError, match="unexpected synthesis.bottleneck"):
        build_vfi_model(other, source=path)
    partial = {**ckpt, "model": {k: v for k, v in ckpt["model"].items() if not k.startswith("flownet.")}}
    with pytest.raises(CheckpointError, match="missing flownet."):
        build_vfi_model(partial, source=path)
    bad_config = {**ckpt, "model_config": {**ckpt["model_config"], "backbone": "swin"}}
    with pytest.raises(CheckpointError, match="invalid VFI model config"):
        build_vfi_model(bad_config, source=path)


def _flip(path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_flipped_bit_in_a_weight_is_refused_not_loaded(vfi_file):
    path, model = vfi_file
    weight = max(model.state_dict().values(), key=lambda t: t.numel())
    offset = path.read_bytes().find(weight.numpy().tobytes())  # torch stores tensors uncompressed
    assert offset > 0
    _flip(path, offset + weight.numel() * 2)  # a bit in the middle of the largest weight
    with pytest.raises(CheckpointError, match="checksum.*kedro run --pipelines vfi_training") as err:
        load_vfi_model(path)
    assert str(err.value).startswith(str(path))


def test_a_flipped_byte_anywhere_is_refused_or_harmless(vfi_file, tmp_path):
    path, model = vfi_file
    reference = {k: v.clone() for k, v in load_vfi_model(path).state_dict().items()}
    original = path.read_bytes()
    refused = 0
    for offset in range(0, len(original), len(original) // 60):
        path.write_bytes(original)
        _flip(path, offset)
        try:
            loaded = load_vfi_model(path).state_dict()
        except CheckpointError as exc:
            assert str(exc).startswith(str(path))
            refused += 1
            continue
        assert all(torch.equal(loaded[k], reference[k]) for k in reference), f"byte {offset} changed the weights"
    assert refused > 0
