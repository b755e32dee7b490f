"""conf/long is the embedded default with more VFI epochs at a lower learning rate, nothing else: a recipe change in
conf/base that was not carried over would make `kedro run --env long` train something else."""
from __future__ import annotations

from kedro.config import OmegaConfigLoader


def _params(project_root, env):
    return OmegaConfigLoader(str(project_root / "conf"), env=env, base_env="base", default_run_env="local")["parameters"]


def test_long_differs_from_base_only_in_more_vfi_epochs_at_a_lower_rate(project_root):
    base, long = _params(project_root, None), _params(project_root, "long")
    b, lg = base["vfi_training"]["loop"], long["vfi_training"]["loop"]
    assert lg["epochs"] > b["epochs"] and lg["lr"] < b["lr"]
    lg["epochs"], lg["lr"] = b["epochs"], b["lr"]
    assert long == base
