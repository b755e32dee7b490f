"""Checkpoints as plain dicts (nanoGPT style), written atomically, read with weights_only=True.

Layout (docs/architecture.md): ``{"kind", "format_version", "model_config", "model",
"optimizer", "scheduler", "epoch", "step", "best_metric", "run_config"}``, plus on disk
``"content_sha256"``, checked on load. Every problem a user
can hit -- missing file, truncated download, somebody else's checkpoint, weights that do not fit
the config -- is a CheckpointError naming the file.
"""
from __future__ import annotations

import hashlib
import io
import logging
from pathlib import Path

import torch
import torch.nn as nn

from animvfi_pipeline.errors import CheckpointError
from animvfi_pipeline.models.flownet import FlowNet, FlowNetConfig
from animvfi_pipeline.models.vfi import VFIConfig, VFIModel
from animvfi_pipeline.utils_io import write_bytes_atomically

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
KINDS = {"animvfi.flownet": "flow network", "animvfi.vfi": "VFI"}
DIGEST_KEY = "content_sha256"
REBUILD_HINTS = {
    "animvfi.flownet": "restore it (`dvc pull`) or retrain it with `kedro run --pipelines flow_pretraining`",
    "animvfi.vfi": "restore it (`dvc pull`) or retrain it with `kedro run --pipelines vfi_training`",
}


def make_checkpoint(kind: str, model: nn.Module, model_config: dict, **extra) -> dict:
    """A checkpoint dict for ``model``; ``extra`` sets optimizer, scheduler, epoch, step,
    best_metric, run_config (state dicts and JSON-like values only)."""
    if kind not in KINDS:
        raise ValueError(f"unknown checkpoint kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    # Unwrap DDP (.module) and torch.compile (._orig_mod) so keys match a bare model.
    model = getattr(model, "module", model)
    model = getattr(model, "_orig_mod", model)
    ckpt = {
        "kind": kind,
        "format_version": FORMAT_VERSION,
        "model_config": model_config,
        "model": model.state_dict(),
        "optimizer": None,
        "scheduler": None,
        "epoch": 0,
        "step": 0,
        "best_metric": None,
        "run_config": {},
    }
    ckpt.update(extra)
    return ckpt


def content_digest(ckpt: dict) -> str:
    """sha256 of everything in ``ckpt`` but the digest itself: weights, optimizer state, config.

    torch's zip reader does not check CRCs, so a flipped byte in a weight would load silently;
    this digest, recorded on save and checked on load, makes it an error instead.
    """
    digest = hashlib.sha256()
    _feed(digest, {k: v for k, v in ckpt.items() if k != DIGEST_KEY})
    return digest.hexdigest()


def _feed(digest, value) -> None:
    if isinstance(value, torch.Tensor):
        t = value.detach().to("cpu").contiguous()
        digest.update(f"T{t.dtype}{tuple(t.shape)};".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy())
    elif isinstance(value, dict):
        digest.update(f"D{len(value)};".encode())
        for key in sorted(value, key=lambda k: (type(k).__name__, repr(k))):
            _feed(digest, key)
            _feed(digest, value[key])
    elif isinstance(value, (list, tuple)):  # a tuple may come back from torch.load as a list
        digest.update(f"L{len(value)};".encode())
        for item in value:
            _feed(digest, item)
    else:
        digest.update(f"{type(value).__name__}:{value!r};".encode())


def with_digest(ckpt: dict) -> dict:
    """A shallow copy of ``ckpt`` that records its content digest."""
    return {**ckpt, DIGEST_KEY: content_digest(ckpt)}


def verify_digest(path: str | Path, ckpt: dict, hint: str) -> None:
    """CheckpointError naming ``path`` if ``ckpt`` does not match the digest recorded on save.
    Checkpoints written before digests existed have none and pass."""
    recorded = ckpt.get(DIGEST_KEY)
    if recorded is not None and recorded != content_digest(ckpt):
        raise CheckpointError(path, f"contents do not match the checksum recorded when it was saved "
                                    f"(the file is damaged); {hint}")


def write_checkpoint_file(path: str | Path, ckpt: dict) -> None:
    """``ckpt`` with its content digest, atomically. Serialised in memory first: torch.save
    straight to a file reports a full disk as "unexpected pos", a plain write as ENOSPC."""
    buffer = io.BytesIO()
    torch.save(with_digest(ckpt), buffer)
    write_bytes_atomically(path, buffer.getbuffer())


def save_checkpoint(path: str | Path, ckpt: dict) -> None:
    """Write ``ckpt`` with its content digest to ``path``; readers never see a half-written file."""
    write_checkpoint_file(path, ckpt)
    logger.info("saved %s checkpoint to %s", ckpt.get("kind"), path)


def load_checkpoint(path: str | Path, expected_kind: str, map_location="cpu") -> dict:
    """Read and validate a checkpoint of ``expected_kind`` ("animvfi.flownet" | "animvfi.vfi")."""
    path = Path(path)
    label = KINDS.get(expected_kind, expected_kind)
    if not path.is_file():
        raise CheckpointError(path, "checkpoint file not found")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # zip, pickle, EOF and "unsupported global" errors alike
        raise CheckpointError(
            path, f"cannot be read as a checkpoint (corrupt, truncated or not a torch file): {e}"
        ) from e
    if not isinstance(ckpt, dict) or "kind" not in ckpt:
        raise CheckpointError(path, f"not an animvfi {label} checkpoint (no 'kind' field)")
    if ckpt["kind"] != expected_kind:
        raise CheckpointError(
            path, f"not an animvfi {label} checkpoint: kind is {ckpt['kind']!r}, expected {expected_kind!r}"
        )
    if ckpt.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            path, f"unsupported format_version {ckpt.get('format_version')!r} (this code reads {FORMAT_VERSION})"
        )
    for key in ("model", "model_config"):
        if not isinstance(ckpt.get(key), dict):
            raise CheckpointError(path, f"checkpoint has no usable {key!r} entry")
    verify_digest(path, ckpt, REBUILD_HINTS.get(expected_kind, "train it again"))
    return ckpt


def _load_weights(model: nn.Module, state: dict, source: str | Path) -> None:
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong_shape = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items() if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or wrong_shape:
        def few(items):
            return ", ".join(items[:5]) + (f" (+{len(items) - 5} more)" if len(items) > 5 else "") or "none"
        raise CheckpointError(
            source, f"weights do not match model config: missing {few(missing)}; "
                    f"unexpected {few(unexpected)}; wrong shape {few(wrong_shape)}"
        )
    model.load_state_dict(state, strict=True)


def build_flownet(ckpt: dict, source: str | Path = "<checkpoint>") -> FlowNet:
    """A FlowNet with the checkpoint's config and weights (``source`` names it in errors)."""
    try:
        model = FlowNet(FlowNetConfig.from_dict(ckpt["model_config"]))
    except (TypeError, ValueError) as e:
        raise CheckpointError(source, f"invalid flow network config: {e}") from e
    _load_weights(model, ckpt["model"], source)
    return model


def build_vfi_model(ckpt: dict, source: str | Path = "<checkpoint>") -> VFIModel:
    """A VFIModel with the checkpoint's config and weights (``source`` names it in errors)."""
    try:
        model = VFIModel(VFIConfig.from_dict(ckpt["model_config"]))
    except (TypeError, ValueError) as e:
        raise CheckpointError(source, f"invalid VFI model config: {e}") from e
    _load_weights(model, ckpt["model"], source)
    return model


def load_flownet(path: str | Path, device: str | torch.device = "cpu") -> FlowNet:
    """The flow network saved at ``path``, on ``device``, in eval mode."""
    ckpt = load_checkpoint(path, "animvfi.flownet", map_location=device)
    return build_flownet(ckpt, source=path).to(device).eval()


def load_vfi_model(path: str | Path, device: str | torch.device = "cpu") -> VFIModel:
    """The VFI model saved at ``path``, on ``device``, in eval mode, ready for ``inference``."""
    ckpt = load_checkpoint(path, "animvfi.vfi", map_location=device)
    return build_vfi_model(ckpt, source=path).to(device).eval()
