"""The run is in MLflow: a real `mlflow server` on loopback serves it over the REST API."""
from __future__ import annotations

import json
import subprocess
import urllib.parse
import urllib.request

import pytest

from project_copy import BIN, free_port, project_env, serving


def _get(base: str, endpoint: str, **query) -> dict:
    url = f"{base}{endpoint}?{urllib.parse.urlencode(query)}" if query else f"{base}{endpoint}"
    with urllib.request.urlopen(url, timeout=30) as resp:
        body = resp.read()
    return json.loads(body) if body.strip().startswith(b"{") else {"raw": body}


def _post(base: str, endpoint: str, payload: dict) -> dict:
    req = urllib.request.Request(f"{base}{endpoint}", data=json.dumps(payload).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


@pytest.fixture
def mlflow_server(finished_project):
    port = free_port()
    with serving([str(BIN / "mlflow"), "server", "--backend-store-uri", "sqlite:///mlflow.db",
                  "--host", "127.0.0.1", "--port", str(port), "--workers", "1"], finished_project, port) as base:
        yield base


def test_run_metrics_and_artifacts_over_rest(mlflow_server):
    base = mlflow_server
    experiment = _get(base, "/api/2.0/mlflow/experiments/get-by-name", experiment_name="animvfi_pipeline")
    exp_id = experiment["experiment"]["experiment_id"]
    runs = _post(base, "/api/2.0/mlflow/runs/search", {"experiment_ids": [exp_id], "max_results": 5})["runs"]
    assert runs, "no run recorded"
    run = runs[0]
    run_id = run["info"]["run_id"]
    metric_keys = {m["key"] for m in run["data"].get("metrics", [])}
    param_keys = {p["key"] for p in run["data"].get("params", [])}
    assert "eval/model/psnr" in metric_keys and "eval/blend/psnr" in metric_keys
    assert any(k.startswith("vfi_training.") for k in param_keys)

    # Per-epoch training curves are histories, not single values.
    history_key = next(k for k in sorted(metric_keys) if k.startswith("vfi/") and "psnr" in k)
    history = _get(base, "/api/2.0/mlflow/metrics/get-history", run_id=run_id, metric_key=history_key)
    assert len(history["metrics"]) >= 1

    listed = _get(base, "/api/2.0/mlflow/artifacts/list", run_id=run_id)
    top = {f["path"] for f in listed.get("files", [])}
    assert {"figures", "reports"} <= top
    summary = _get(base, "/get-artifact", path="reports/summary.md", run_uuid=run_id)["raw"]
    assert b"classical_flow" in summary

    # MLflow 3 keeps models logged with `name=` as LoggedModels linked to their run.
    models = _post(base, "/api/2.0/mlflow/logged-models/search", {"experiment_ids": [exp_id]})["models"]
    logged = {m["info"]["name"] for m in models if m["info"].get("source_run_id") == run_id}
    assert "vfi_model" in logged


def test_logged_model_loads_back_and_is_the_trained_model(finished_project):
    # What serving does: fetch the run's LoggedModel (a pyfunc around the checkpoint) from the
    # tracking store. The network inside must be the model saved as vfi.pt.
    script = """
import mlflow, torch
from animvfi_pipeline.models.checkpoint import load_vfi_model
mlflow.set_tracking_uri("sqlite:///mlflow.db")
exp = mlflow.get_experiment_by_name("animvfi_pipeline")
info = next(m for m in mlflow.search_logged_models(experiment_ids=[exp.experiment_id], output_format="list")
            if m.name == "vfi_model")
served = mlflow.pyfunc.load_model(info.model_uri).unwrap_python_model().model
img0, img1 = torch.rand(1, 3, 40, 56), torch.rand(1, 3, 40, 56)
with torch.no_grad():
    out = served.inference(img0, img1, 0.5)
    local = load_vfi_model("data/06_models/vfi.pt").inference(img0, img1, 0.5)
print(tuple(out.shape), float((out - local).abs().max()))
"""
    proc = subprocess.run([str(BIN / "python"), "-c", script], cwd=finished_project, env=project_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    shape, diff = proc.stdout.strip().rsplit(" ", 1)
    assert shape == "(1, 3, 40, 56)"
    assert float(diff) < 1e-5
