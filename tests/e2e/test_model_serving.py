"""`make serve`: the registered model answers over HTTP on loopback with the frame the model
computes in process, and refuses bad requests with a 4xx and a message."""
from __future__ import annotations

import base64
import io
import json
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch
from PIL import Image

from animvfi_pipeline.data.h5store import TripletStore
from animvfi_pipeline.models.checkpoint import load_vfi_model

from project_copy import BIN, free_port, serving


def _png(frame: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


@pytest.fixture
def model_server(finished_project):
    # `make serve` as a user runs it, with this test's virtualenv (-o: do not reinstall it).
    # Version 1 rather than @champion: on tiny settings the gate may have withheld the alias.
    port, venv = free_port(), BIN.parent
    with serving(["make", "-o", f"{venv}/.installed", "serve", f"VENV={venv}", "SERVE_MODEL=models:/animvfi-vfi/1",
                  f"SERVE_PORT={port}"], finished_project, port) as base:
        yield base


def _post(base: str, row: dict) -> tuple[int, dict]:
    req = urllib.request.Request(f"{base}/invocations", data=json.dumps({"dataframe_records": [row]}).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_served_frame_is_the_models_and_bad_requests_are_4xx(model_server, finished_project):
    store = TripletStore(finished_project / "data/02_intermediate/triplets.h5")
    frame1, _, frame3 = store.frames(int(store.indices("test")[0]))
    status, body = _post(model_server, {"frame0": _png(frame1), "frame1": _png(frame3), "t": 0.5})
    assert status == 200, body
    served = np.asarray(Image.open(io.BytesIO(base64.b64decode(body["predictions"][0]["frame"]))))

    model = load_vfi_model(finished_project / "data/06_models/vfi.pt")
    with torch.no_grad():
        out = model.inference(*(torch.from_numpy(f.copy()).permute(2, 0, 1)[None].float() / 255 for f in (frame1, frame3)),
                              0.5)
    local = (out[0].permute(1, 2, 0) * 255).round().byte().numpy()
    assert served.shape == frame1.shape
    assert np.abs(served.astype(int) - local.astype(int)).max() <= 1

    jpeg = io.BytesIO()
    Image.fromarray(frame1).save(jpeg, format="JPEG")
    huge = np.zeros((1200, 1920, 3), np.uint8)  # over the 1920x1088 limit of conf/base/parameters_registry.yml
    bad = {
        "not a PNG": {"frame0": base64.b64encode(jpeg.getvalue()).decode(), "frame1": _png(frame3), "t": 0.5},
        "same size": {"frame0": _png(frame1), "frame1": _png(frame3[:, :-8]), "t": 0.5},
        "strictly between 0 and 1": {"frame0": _png(frame1), "frame1": _png(frame3), "t": 1.0},
        "larger than this server accepts": {"frame0": _png(huge), "frame1": _png(huge), "t": 0.5},
    }
    for message, row in bad.items():
        status, body = _post(model_server, row)
        assert 400 <= status < 500 and message in body["message"], (message, status, body)
