"""The served model, loaded the way `mlflow models serve` loads it: frames in, the frame at t out,
and every bad request refused with a 400 and a message."""
from __future__ import annotations

import base64
import io

import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.exceptions import MlflowException
from PIL import Image

from animvfi_pipeline.models.checkpoint import make_checkpoint, save_checkpoint
from animvfi_pipeline.models.flownet import FlowNetConfig
from animvfi_pipeline.models.vfi import VFIConfig, VFIModel
from animvfi_pipeline.tracking.pyfunc_model import VFIPyfuncModel, signature

from fixtures_atd12k import pattern

pytestmark = pytest.mark.usefixtures("one_thread")
W, H = 40, 32


@pytest.fixture(scope="module")
def model_and_pyfunc(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pyfunc")
    torch.manual_seed(0)
    cfg = VFIConfig(flow=FlowNetConfig(scales=(4, 2), channels=(8, 8), depth=1), widths=(8, 8, 8, 8), head_channels=4)
    model = VFIModel(cfg).eval()
    with torch.no_grad():  # learned parts on, so the output is not just the prior's
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    save_checkpoint(tmp / "vfi.pt", make_checkpoint("animvfi.vfi", model, cfg.to_dict()))
    mlflow.pyfunc.save_model(tmp / "model", python_model=VFIPyfuncModel(), artifacts={"checkpoint": str(tmp / "vfi.pt")},
                             signature=signature(), model_config={"max_pixels": W * H},
                             pip_requirements=["mlflow", "torch"])  # not inferred: that loads the model in a subprocess
    return model, mlflow.pyfunc.load_model(str(tmp / "model"))


def _png(frame: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _frames():
    return pattern(W, H, seed=1), np.roll(pattern(W, H, seed=1), 3, axis=1)


def test_returns_the_frame_the_model_computes(model_and_pyfunc):
    model, served = model_and_pyfunc
    f0, f1 = _frames()
    out = served.predict(pd.DataFrame([{"frame0": _png(f0), "frame1": _png(f1), "t": 0.25}]))
    frame = np.asarray(Image.open(io.BytesIO(base64.b64decode(out["frame"][0]))))
    with torch.no_grad():
        expected = model.inference(*(torch.from_numpy(f).permute(2, 0, 1)[None].float() / 255 for f in (f0, f1)), 0.25)
    expected = (expected[0].permute(1, 2, 0) * 255).round().byte().numpy()
    assert frame.shape == (H, W, 3)
    assert np.abs(frame.astype(int) - expected.astype(int)).max() <= 1


def _bad(served, **row) -> MlflowException:
    f0, f1 = _frames()
    with pytest.raises(MlflowException) as info:
        served.predict(pd.DataFrame([{"frame0": _png(f0), "frame1": _png(f1), "t": 0.5, **row}]))
    assert info.value.get_http_status_code() == 400
    return info.value


def test_bad_requests_are_400_with_a_message(model_and_pyfunc):
    _, served = model_and_pyfunc
    jpeg = io.BytesIO()
    Image.fromarray(_frames()[0]).save(jpeg, format="JPEG")
    assert "not a PNG" in _bad(served, frame0=base64.b64encode(jpeg.getvalue()).decode()).message
    assert "not valid base64" in _bad(served, frame1="%%%").message
    assert "same size" in _bad(served, frame1=_png(pattern(W - 8, H, seed=2))).message
    assert "larger than this server accepts" in _bad(served, frame0=_png(pattern(W * 2, H * 2, seed=3))).message
    for t in (0.0, 1.0, -0.5, float("nan")):
        assert "strictly between 0 and 1" in _bad(served, t=t).message
    truncated = _png(_frames()[0])[:60]
    truncated += "=" * (-len(truncated) % 4)
    assert "frame0" in _bad(served, frame0=truncated).message
