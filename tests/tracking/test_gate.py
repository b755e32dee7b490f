"""The promotion gate: who takes the champion alias, scored on the same validation triplets."""
from __future__ import annotations

import pytest

from animvfi_pipeline.data.h5store import TripletStore
from animvfi_pipeline.models.flownet import FlowNetConfig
from animvfi_pipeline.models.vfi import VFIConfig, VFIModel
from animvfi_pipeline.tracking.gate import GateParams, decide, run_gate

from fixtures_atd12k import make_tiny_store

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("new, prior, champion, promote, why", [
    (30.0, 29.0, None, True, "no champion yet"),
    (30.0, 29.0, 29.5, True, "and the champion"),
    (30.0, 29.0, 30.5, False, "but not the champion"),
    (30.0, 30.0, None, False, "does not beat its prior"),   # a tie does not earn the alias
    (28.0, 29.0, 20.0, False, "does not beat its prior"),   # beating a weak champion is not enough
    (30.0, 29.0, 30.0, False, "but not the champion"),
])
def test_decide(new, prior, champion, promote, why):
    promoted, reason = decide(new, prior, champion)
    assert promoted is promote and why in reason


def test_min_gain_is_a_margin_over_each_rival():
    assert decide(30.0, 29.9, None, min_gain=0.2)[0] is False
    assert decide(30.0, 29.0, 29.9, min_gain=0.2)[0] is False
    assert decide(30.0, 29.0, 29.7, min_gain=0.2)[0] is True


def test_a_lower_is_better_metric_is_refused():
    with pytest.raises(ValueError, match="ie"):
        GateParams(metric="ie")


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> TripletStore:
    return make_tiny_store(tmp_path_factory.mktemp("atd12k"))


def _model(seed: int) -> VFIModel:
    import torch

    torch.manual_seed(seed)
    cfg = VFIConfig(flow=FlowNetConfig(scales=(4, 2), channels=(8, 8), depth=1), widths=(8, 8, 8, 8), head_channels=4)
    return VFIModel(cfg).eval()


def test_a_model_that_learned_nothing_is_not_promoted(store):
    # An untrained network is exactly its prior (zero-initialised heads): same score, no alias.
    result = run_gate(store, _model(0), GateParams(split="test", limit=2, device="cpu"), load_champion=lambda: None)
    assert result.new == pytest.approx(result.prior)
    assert result.n_triplets == 2 and result.champion is None and result.champion_version is None
    assert result.promote is False and "does not beat its prior" in result.reason


def test_the_champion_is_scored_on_the_same_triplets(store):
    champion = _model(1)
    result = run_gate(store, _model(0), GateParams(split="test", limit=2, device="cpu"),
                      load_champion=lambda: (champion, "7"))
    assert result.champion_version == "7" and result.champion is not None
    assert result.champion == pytest.approx(result.prior)  # also untrained: its prior on the same frames
