"""The two stages' tasks: what they measure, and which data they may see."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

from animvfi_pipeline.data.atd12k import scan_atd12k
from animvfi_pipeline.data.h5store import IngestionConfig, TripletStore, write_triplets_h5
from animvfi_pipeline.training.tasks import FlowTask, VFITask, make_datasets

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fixtures_atd12k import make_atd12k_tree  # noqa: E402

SMALL_FLOW = {"scales": [8, 4], "channels": [8, 8], "depth": 1}


class Fixed(torch.nn.Module):
    """A 'model' that returns given outputs, to check the metrics against hand-computed values."""

    def __init__(self, out):
        super().__init__()
        self.out = out

    def forward(self, *args, **kwargs):
        return self.out


def test_flow_validation_sums_the_per_sample_end_point_error():
    gt01 = torch.zeros(2, 2, 4, 4)
    gt01[1, 0] = 3.0  # sample 1 moves 3 px right
    batch = {"img0": torch.zeros(2, 3, 4, 4), "img1": torch.zeros(2, 3, 4, 4), "flow_01": gt01, "flow_10": -gt01}
    pred = torch.zeros(2, 2, 4, 4)
    pred[:, 1] = 4.0  # 4 px down everywhere: error 4 on sample 0, 5 on sample 1
    out = FlowTask(SMALL_FLOW).evaluate(Fixed((pred, -pred)), batch)
    assert out["count"].item() == 2
    assert out["epe"].item() == pytest.approx(4.0 + 5.0, rel=1e-5)


def test_vfi_validation_psnr_uses_the_clamped_prediction():
    target = torch.full((2, 3, 16, 16), 0.5)
    pred = target.clone()
    pred[0] += 0.1  # MSE 0.01 -> 20 dB
    pred[1, :, :, :8] = 2.0  # clamped to 1: half the pixels off by 0.5 -> MSE 0.125
    flow_task = FlowTask(SMALL_FLOW)
    task = VFITask({"widths": [8, 8], "head_channels": 4}, flow_task.make_checkpoint(flow_task.build_model()))
    batch = {"img0": target, "img1": target, "t": torch.full((2,), 0.5), "target": target}
    out = task.evaluate(Fixed({"pred": pred}), batch)
    assert out["psnr"].item() == pytest.approx(20.0 + 10 * math.log10(1 / 0.125), rel=1e-4)
    assert 0 < out["ssim"].item() < 2


def test_vfi_takes_its_flow_network_from_the_checkpoint_only():
    flow_task = FlowTask(SMALL_FLOW)
    ckpt = flow_task.make_checkpoint(flow_task.build_model())
    with pytest.raises(ValueError, match="flownet checkpoint"):
        VFITask({"flow": SMALL_FLOW}, ckpt)
    model = VFITask({"widths": [8, 8], "head_channels": 4}, ckpt).build_model()
    assert all(torch.equal(v, ckpt["model"][k]) for k, v in model.flownet.state_dict().items())


def test_training_and_validation_never_read_the_test_split(tmp_path):
    make_atd12k_tree(tmp_path / "raw", n_train_clips=4, n_test=3, triplets_per_clip=2, size=(48, 32))
    write_triplets_h5(tmp_path / "s.h5", scan_atd12k(tmp_path / "raw"),
                      IngestionConfig(size=(48, 32), workers=0, val_fraction=0.25), progress=False)
    store = TripletStore(tmp_path / "s.h5")
    train_set, val_set = make_datasets(store, {"crop": [32, 32]}, seed=0)
    seen = {int(ds[i]["index"]) for ds in (train_set, val_set) for i in range(len(ds))}
    test_rows = set(store.indices("test").tolist())
    assert seen == set(range(len(store))) - test_rows
    assert {int(val_set[i]["index"]) for i in range(len(val_set))} == set(store.indices("val").tolist())


def test_a_pretrained_flow_that_does_not_help_interpolation_is_replaced_by_its_prior(tmp_path):
    from animvfi_pipeline.models.checkpoint import build_flownet, make_checkpoint
    from animvfi_pipeline.models.flownet import FlowNet, FlowNetConfig
    from animvfi_pipeline.training.tasks import flow_that_helps

    make_atd12k_tree(tmp_path / "raw", n_train_clips=4, n_test=1, triplets_per_clip=1, size=(64, 48))
    write_triplets_h5(tmp_path / "s.h5", scan_atd12k(tmp_path / "raw"),
                      IngestionConfig(size=(64, 48), workers=0, val_fraction=0.5), progress=False)
    store = TripletStore(tmp_path / "s.h5")
    cfg = FlowNetConfig(scales=(8, 4), channels=(8, 8), depth=1, init="dis", dis_preset="ultrafast")
    model = {"widths": [8, 8], "head_channels": 4}
    # A "pretrained" residual that pushes every pixel 3 px sideways: a better EPE cannot make
    # that a better interpolator, and the check must see it on the validation split.
    bad = FlowNet(cfg)
    with torch.no_grad():
        bad.blocks[-1].up.bias.copy_(torch.tensor([3.0, 0.0, -3.0, 0.0]))
    chosen, figures = flow_that_helps(store, make_checkpoint("animvfi.flownet", bad, cfg.to_dict()), model)
    assert figures["prior_psnr"] > figures["pretrained_psnr"] and figures["kept_pretrained"] == 0.0
    assert not any(p.detach().any() for p in build_flownet(chosen).blocks[-1].up.parameters())
    # A tie goes to the prior: a learned part has to add something to be kept.
    _, figures = flow_that_helps(store, chosen, model)
    assert figures["prior_psnr"] == figures["pretrained_psnr"] and figures["kept_pretrained"] == 0.0


def test_the_stored_prior_is_used_when_its_preset_is_the_flow_nets(tmp_path):
    from animvfi_pipeline.data.torch_dataset import to_float
    from animvfi_pipeline.models.flownet import FlowNetConfig

    make_atd12k_tree(tmp_path / "raw", n_train_clips=4, n_test=1, triplets_per_clip=2, size=(48, 32))
    write_triplets_h5(tmp_path / "s.h5", scan_atd12k(tmp_path / "raw"),
                      IngestionConfig(size=(48, 32), workers=0, val_fraction=0.25, dis_prior="fast"), progress=False)
    store = TripletStore(tmp_path / "s.h5")

    def val_prior(preset, **data):
        _, val_set = make_datasets(store, data, seed=0, flow_config=FlowNetConfig(init="dis", dis_preset=preset))
        sample = to_float(val_set[0])  # whole frames, not augmented; float32 as the loop makes it
        return sample["prior"], store.prior(int(sample["index"]))

    got, stored = val_prior("fast")
    assert torch.equal(got, torch.from_numpy(stored))
    got, stored = val_prior("fast", prior_from="frames")  # forced: DIS on the sample, full precision
    assert not torch.equal(got, torch.from_numpy(stored))
    assert (got - torch.from_numpy(stored)).abs().max() < 0.05  # the same DIS, but not rounded to float16
    got, stored = val_prior("medium")  # another preset: computed from the frames
    assert not torch.equal(got, torch.from_numpy(stored))
