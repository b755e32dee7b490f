"""The evaluation pipeline end to end on a tiny real store and an untrained tiny model, writing
through the project's own catalog entries."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from animvfi_pipeline.data.atd12k import scan_atd12k
from animvfi_pipeline.data.h5store import IngestionConfig, TripletStore, write_triplets_h5
from animvfi_pipeline.errors import CheckpointError
from animvfi_pipeline.models.checkpoint import make_checkpoint
from animvfi_pipeline.models.flownet import FlowNetConfig
from animvfi_pipeline.models.vfi import VFIConfig, VFIModel
from animvfi_pipeline.pipelines.evaluation import create_pipeline
from animvfi_pipeline.pipelines.evaluation.nodes import evaluate

from fixtures_atd12k import make_atd12k_tree

OUTPUTS = ["evaluation_metrics", "per_triplet_metrics", "psnr_by_method", "evaluation_summary",
           "evaluation_gallery", "psnr_distribution", "training_curves", "promotion_gate"]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> TripletStore:
    root = tmp_path_factory.mktemp("atd12k")
    make_atd12k_tree(root, n_train_clips=1, n_test=3, triplets_per_clip=1, size=(64, 48))
    path = root / "triplets.h5"
    write_triplets_h5(path, scan_atd12k(root), IngestionConfig(size=(64, 48), workers=0), progress=False)
    return TripletStore(path)


@pytest.fixture(scope="module")
def checkpoint() -> dict:
    cfg = VFIConfig(flow=FlowNetConfig(scales=(4, 2), channels=(8, 8), depth=1), widths=(8, 8, 8, 8), head_channels=4)
    return make_checkpoint("animvfi.vfi", VFIModel(cfg), cfg.to_dict())


def _params(**over) -> dict:
    return {"split": "test", "limit": None, "device": "cpu", "lpips": False,
            "classical_flow": {"preset": "ultrafast"}, **over}


def _history() -> pd.DataFrame:
    return pd.DataFrame({"epoch": [1, 2], "train_loss": [0.3, 0.2], "val_psnr": [20.0, 22.0]})


def _catalog(tmp_path, project_root, inputs: dict) -> DataCatalog:
    """The project's evaluation catalog entries, written under tmp_path instead of data/."""
    config = yaml.safe_load((project_root / "conf/base/catalog.yml").read_text())
    # Unwrap kedro-mlflow's artifact wrappers: here we test the files, not MLflow logging.
    entries = {name: dict(config[name].get("dataset", config[name])) for name in OUTPUTS}
    for entry in entries.values():
        entry["filepath"] = str(tmp_path / entry["filepath"])
    catalog = DataCatalog.from_config(entries)
    for name, value in inputs.items():
        catalog[name] = MemoryDataset(value)
    return catalog


def test_pipeline_writes_the_report_through_the_catalog(store, checkpoint, tmp_path, project_root):
    catalog = _catalog(tmp_path, project_root, {
        "triplet_store": store, "vfi_model": checkpoint, "flow_training_history": _history(),
        "vfi_training_history": _history(), "params:evaluation": _params(),
        "params:promotion": {"split": "test", "limit": 2, "device": "cpu"},
    })
    SequentialRunner().run(create_pipeline(), catalog)

    reporting = tmp_path / "data/08_reporting"
    metrics = json.loads((reporting / "metrics.json").read_text())
    assert set(metrics) == {"model", "prior", "repeat", "blend", "classical_flow"}
    for values in metrics.values():
        assert values["n_triplets"] == 3
        for key in ("psnr", "ssim", "ssim_animeinterp", "roi_psnr", "roi_ssim", "ie", "psnr_east"):
            assert key in values
    # The fixture's test frames move by a few pixels, so repeating frame1 cannot be perfect.
    assert metrics["repeat"]["psnr"] < 100

    per_triplet = pd.read_csv(reporting / "per_triplet.csv")
    assert len(per_triplet) == 3 * 5 and set(per_triplet["east_west"]) == {"east"}
    by_method = pd.read_csv(reporting / "psnr_by_method.csv")
    assert list(by_method["method"]) == ["model", "prior", "repeat", "blend", "classical_flow"]
    summary = (reporting / "summary.md").read_text()
    assert "| classical_flow |" in summary
    gain = metrics["model"]["psnr"] - metrics["prior"]["psnr"]
    assert f"all: {gain:+.2f} dB PSNR" in summary  # the report says what training added
    for name in ("gallery", "psnr_distribution", "training_curves"):
        assert (reporting / "figures" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    # No MLflow run: gated against the prior only, which an untrained model merely equals.
    gate = json.loads((reporting / "promotion_gate.json").read_text())
    assert gate["champion"] is None and gate["n_triplets"] == 2 and gate["promote"] is False


def test_limit_and_no_histories(store, checkpoint):
    metrics, per_triplet, *_ = evaluate(store, checkpoint, None, None, _params(limit=1))
    assert len(per_triplet) == 5 and metrics["model"]["n_triplets"] == 1


def test_a_checkpoint_that_does_not_fit_its_config_is_refused(store, checkpoint):
    broken = dict(checkpoint, model={k: v for k, v in list(checkpoint["model"].items())[1:]})
    with pytest.raises(CheckpointError):
        evaluate(store, broken, None, None, _params())


def test_a_misspelt_parameter_is_an_error(store, checkpoint):
    with pytest.raises(TypeError, match="splt"):
        evaluate(store, checkpoint, None, None, {"splt": "test"})


def test_a_fine_tuned_model_is_reported_beside_the_model_it_started_from(store, checkpoint, tmp_path):
    from animvfi_pipeline.models.checkpoint import save_checkpoint
    from animvfi_pipeline.tracking.registry import weights_digest

    save_checkpoint(tmp_path / "start.pt", checkpoint)
    fine_tuned = dict(checkpoint, init_from={"source": str(tmp_path / "start.pt"),
                                             "weights_digest": weights_digest(checkpoint)})
    metrics, _, by_method, summary, *_ = evaluate(store, fine_tuned, None, None, _params(limit=1))
    assert list(by_method["method"])[:2] == ["model", "start"]
    assert "What fine-tuning added" in summary

    # The start overwritten by other weights (say, the fine-tuned model saved to the same path):
    # evaluation still reports everything else, without a `start` row that would be wrong.
    other = make_checkpoint("animvfi.vfi", VFIModel(VFIConfig(**{**checkpoint["model_config"], "widths": [8, 8]})),
                            {**checkpoint["model_config"], "widths": [8, 8]})
    save_checkpoint(tmp_path / "start.pt", other)
    metrics, *_ = evaluate(store, fine_tuned, None, None, _params(limit=1))
    assert "start" not in metrics and "model" in metrics


def test_model_and_prior_run_the_checkpoints_mirrored_passes_unless_told_otherwise(store):
    cfg = VFIConfig(flow=FlowNetConfig(scales=(4, 2), channels=(8, 8), depth=1, init="dis"), widths=(8, 8, 8, 8),
                    head_channels=4, flip_ensemble=4)
    four = make_checkpoint("animvfi.vfi", VFIModel(cfg), cfg.to_dict())
    metrics4, _, _, summary4, *_ = evaluate(store, four, None, None, _params(limit=2))
    metrics1, _, _, summary1, *_ = evaluate(store, four, None, None, _params(limit=2, flips=1))
    assert "average 4 mirrored passes" in summary4 and "one pass each" in summary1
    assert metrics4["prior"]["psnr"] != metrics1["prior"]["psnr"]  # the passes change the frames
    # an untrained network is its prior, with the same passes or without
    for m in (metrics4, metrics1):
        assert m["model"]["psnr"] == pytest.approx(m["prior"]["psnr"], abs=1e-6)


def test_model_and_prior_choose_among_the_checkpoints_flow_candidates_unless_told_otherwise(store):
    cfg = VFIConfig(flow=FlowNetConfig(scales=(4, 2), channels=(8, 8), depth=1, init="dis", dis_preset="fine"),
                    widths=(8, 8, 8, 8), head_channels=4, flow_candidates=["fine", "fine-pca", "fine-alpha10"])
    three = make_checkpoint("animvfi.vfi", VFIModel(cfg), cfg.to_dict())
    metrics3, _, _, summary3, *_ = evaluate(store, three, None, None, _params(limit=2, flips=1))
    metrics1, _, _, summary1, *_ = evaluate(store, three, None, None, _params(limit=2, flips=1, flow_candidates=[]))
    assert "fine-pca" in summary3 and "fine-pca" not in summary1  # the report says which prior was used
    assert metrics3["prior"]["psnr"] != metrics1["prior"]["psnr"]  # the candidates change the flow
    for m in (metrics3, metrics1):  # an untrained network is its prior whichever flow it gets
        assert m["model"]["psnr"] == pytest.approx(m["prior"]["psnr"], abs=1e-6)


def test_model_and_prior_warp_with_the_checkpoints_kernel_unless_told_otherwise(store):
    cfg = VFIConfig(flow=FlowNetConfig(scales=(4, 2), channels=(8, 8), depth=1, init="dis", dis_preset="fine"),
                    widths=(8, 8, 8, 8), head_channels=4, warp_mode="bicubic")
    bicubic = make_checkpoint("animvfi.vfi", VFIModel(cfg), cfg.to_dict())
    metrics_c, _, _, summary_c, *_ = evaluate(store, bicubic, None, None, _params(limit=2, flips=1))
    metrics_l, _, _, summary_l, *_ = evaluate(store, bicubic, None, None, _params(limit=2, flips=1, warp_mode="bilinear"))
    assert "bicubic kernel" in summary_c and "bicubic" not in summary_l  # the report says how it warped
    assert metrics_c["prior"]["psnr"] != metrics_l["prior"]["psnr"]  # the kernel changes the frames
    for m in (metrics_c, metrics_l):
        assert m["model"]["psnr"] == pytest.approx(m["prior"]["psnr"], abs=1e-6)
