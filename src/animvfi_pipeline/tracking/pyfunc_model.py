"""The logged and served model: an MLflow pyfunc that takes two frames and a t, returns the frame.

Request (``mlflow models serve``, POST /invocations)::

    {"dataframe_records": [{"frame0": "<base64 PNG>", "frame1": "<base64 PNG>", "t": 0.5}]}

Response: ``{"predictions": [{"frame": "<base64 PNG>"}]}``, one row per request row. PNG both ways
because it is lossless: the served frame is bit for bit what ``VFIModel.inference`` gives.

Bad input (not a PNG, frames of different sizes, t outside (0, 1), frames larger than
``max_pixels``) raises an ``MlflowException`` with INVALID_PARAMETER_VALUE, which the scoring
server returns as HTTP 400 with the message. The size limit is checked on the PNG header, before
the pixels are decoded, so an oversized frame costs no memory.

The weights travel as the model's ``checkpoint`` artifact (the project's own vfi.pt format), so
the registry, ``animvfi interpolate --model models:/...`` and the server load the same file with
the same code. Loading needs this package installed, which ``--env-manager local`` provides.
"""
from __future__ import annotations

import base64
import binascii
import io
import math
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

DEFAULT_MAX_PIXELS = 1920 * 1088  # a 1080p frame (padded to a multiple of 16 rows) and no bigger
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _bad_request(message: str) -> MlflowException:
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


def encode_png(frame: np.ndarray) -> str:
    """uint8 (H, W, 3) RGB -> base64 PNG text."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(frame, dtype=np.uint8), mode="RGB").save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def decode_png(text: Any, field: str, max_pixels: int) -> np.ndarray:
    """base64 PNG text -> uint8 (H, W, 3) RGB; a 400-worthy MlflowException for anything else."""
    from PIL import Image, UnidentifiedImageError

    if not isinstance(text, str) or not text:
        raise _bad_request(f"{field}: expected a base64-encoded PNG string")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _bad_request(f"{field}: not valid base64") from None
    if not raw.startswith(PNG_MAGIC):
        raise _bad_request(f"{field}: not a PNG image (JPEG and other formats are not accepted)")
    try:
        image = Image.open(io.BytesIO(raw))  # reads the header only
        width, height = image.size
        if width * height > max_pixels:
            raise _bad_request(f"{field}: {width}x{height} is larger than this server accepts "
                               f"({max_pixels} pixels); downscale the frames first")
        return np.array(image.convert("RGB"), dtype=np.uint8)  # a writable copy, as torch wants
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise _bad_request(f"{field}: unreadable PNG ({exc})") from None


def parse_t(value: Any) -> float:
    try:
        t = float(value)
    except (TypeError, ValueError):
        raise _bad_request(f"t: expected a number in (0, 1), got {value!r}") from None
    if not (math.isfinite(t) and 0.0 < t < 1.0):
        raise _bad_request(f"t: must be strictly between 0 and 1 (0 is frame0, 1 is frame1), got {t}")
    return t


def interpolate_frame(model: Any, frame0: np.ndarray, frame1: np.ndarray, t: float) -> np.ndarray:
    """uint8 frames in, the uint8 frame at ``t`` out: what the server returns, computed in process."""
    import torch

    def to_tensor(frame: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(frame).permute(2, 0, 1).unsqueeze(0).float().div(255.0)

    device = next(model.parameters()).device
    with torch.no_grad():
        out = model.inference(to_tensor(frame0).to(device), to_tensor(frame1).to(device), t)
    return out[0].permute(1, 2, 0).mul(255.0).round().clamp(0, 255).byte().cpu().numpy()


class VFIPyfuncModel(mlflow.pyfunc.PythonModel):
    """Two base64 PNG frames and t in, the base64 PNG frame at t out (see the module docstring)."""

    def load_context(self, context) -> None:
        from animvfi_pipeline.models.checkpoint import load_vfi_model

        config = context.model_config or {}
        self.max_pixels = int(config.get("max_pixels", DEFAULT_MAX_PIXELS))
        self.model = load_vfi_model(context.artifacts["checkpoint"], device=config.get("device", "cpu"))

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        rows = model_input.to_dict("records") if isinstance(model_input, pd.DataFrame) else list(model_input)
        if not rows:
            raise _bad_request("no rows: send frame0, frame1 and t")
        frames = []
        for i, row in enumerate(rows):
            missing = {"frame0", "frame1", "t"} - set(row)
            if missing:
                raise _bad_request(f"row {i}: missing {sorted(missing)}")
            frame0 = decode_png(row["frame0"], f"row {i} frame0", self.max_pixels)
            frame1 = decode_png(row["frame1"], f"row {i} frame1", self.max_pixels)
            if frame0.shape != frame1.shape:
                raise _bad_request(f"row {i}: frame0 is {frame0.shape[1]}x{frame0.shape[0]} but frame1 is "
                                   f"{frame1.shape[1]}x{frame1.shape[0]}; both frames must be the same size")
            t = parse_t(row["t"])
            frames.append(encode_png(interpolate_frame(self.model, frame0, frame1, t)))
        return pd.DataFrame({"frame": frames})


def signature():
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, DataType, Schema

    return ModelSignature(
        inputs=Schema([ColSpec(DataType.string, "frame0"), ColSpec(DataType.string, "frame1"),
                       ColSpec(DataType.double, "t")]),
        outputs=Schema([ColSpec(DataType.string, "frame")]),
    )
