"""TripletDataset: training samples (two frames, a target at time t, bidirectional flow) from a store.

Worker-safe: the dataset holds the store, which opens its HDF5 file lazily in each process, so
DataLoader workers never share an h5py handle. Augmentation randomness comes from
``(seed, epoch, sample)`` alone, so a sample is augmented the same way whatever the number of
workers, the order they run in, or whether training was resumed mid-run. Call ``set_epoch``
before each epoch (the training loop does) to draw new augmentations.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from animvfi_pipeline.data.flow import dis_flow_pair
from animvfi_pipeline.errors import DataError

MIDDLE = -1  # sample target: frame2 at t = 0.5 (otherwise an index into the store's extra frames)


class TripletDataset(Dataset):
    """Samples of one split of a ``TripletStore``.

    Each sample is a dict: ``img0``, ``img1``, ``target`` float32 ``(3, h, w)`` in [0, 1];
    ``t`` float32 scalar; ``flow_01``, ``flow_10`` float32 ``(2, h, w)`` in pixels
    (``warp(img1, flow_01) ~= img0``); ``index`` (row in the store). A store ingested without
    flow (``flow_source: none``) gives samples without the two flow keys.

    crop: ``(h, w)`` window; random when ``augment`` else centred; ``None`` keeps whole frames.
    augment: random crop, horizontal and vertical flips, temporal reversal.
    colour: with ``augment``, also recolour each sample, the same way for its three frames: the
        RGB channels in a random order and a random gamma (0.6-1.6) per channel. Motion and
        outlines stay; the palette and the contrast of shading change, so what the model learns
        is less tied to the training styles' colours (measured: no gain, docs/training.md "The selector's recipe").
    times: ``"middle"`` trains on frame2 (t = 0.5) only; ``"all"`` adds the store's extra frames
        at their own t (arbitrary-t training), one sample per target frame.
    flows: ``False`` skips reading the flows (VFI training does not need them; at 960x540 they
        are most of the bytes read per sample).
    prior: a DIS preset: also return ``"prior"``, the (4, h, w) DIS flows (0 -> 1, 1 -> 0) that a
        FlowNet with ``init="dis"`` refines, made here in the DataLoader worker rather than in the
        training process (where, on a GPU, it would hold up every step).
    prior_from: where that prior comes from.
        ``"frames"``: DIS computed on the sample's own (cropped, flipped, reversed) frames, exactly
        what ``FlowNet.prior`` gives for them.
        ``"store"``: the store's prior (``ingestion.dis_prior``, same preset), computed once on the
        whole stored frames as ``FlowNet.prior`` does at inference on frames of that size; the
        sample gets its crop, flipped and reversed like the flows. No DIS in the worker.
    compact: images as uint8 ``(3, h, w)`` and flows read from the store as float16, as stored:
        2.7x fewer bytes per sample through the DataLoader's shared memory, which at 960x540
        costs a worker more CPU than reading the sample (docs/data.md). ``to_float(batch)`` gives
        back the float32 batch bit for bit; the training loop calls it on the device.
    """

    def __init__(
        self,
        store: Any,
        split: str,
        crop: tuple[int, int] | list[int] | None = None,
        augment: bool = False,
        times: str = "middle",
        seed: int = 0,
        flows: bool = True,
        prior: str | None = None,
        prior_from: str = "frames",
        compact: bool = False,
        colour: bool = False,
    ):
        if times not in ("middle", "all"):
            raise ValueError(f"times must be 'middle' or 'all', not {times!r}")
        self.store = store
        self.split = split
        self.augment = augment
        self.colour = colour
        self.seed = seed
        self.epoch = 0
        self.prior = prior
        self.compact = compact
        if prior_from not in ("frames", "store"):
            raise ValueError(f"prior_from must be 'frames' or 'store', not {prior_from!r}")
        self.prior_from = prior_from if prior is not None else None
        if self.prior_from == "store" and getattr(store, "prior_preset", None) != prior:
            stored = getattr(store, "prior_preset", None)
            raise DataError(
                _store_path(store),
                f"the flow net's prior is DIS {prior!r} but the store holds "
                + ("no DIS prior" if stored is None else f"DIS {stored!r}")
                + f" (ingest with ingestion.dis_prior: {prior}, or compute it from the frames)",
            )
        self.crop = None if crop is None else (int(crop[0]), int(crop[1]))
        if self.crop is not None and (self.crop[0] > store.height or self.crop[1] > store.width):
            raise DataError(
                _store_path(store),
                f"crop {self.crop[0]}x{self.crop[1]} is larger than the stored frames "
                f"({store.height}x{store.width})",
            )
        rows = np.asarray(store.indices(split), dtype=np.int64)
        targets = [MIDDLE]
        self.extra_times = [float(t) for t in (store.extra_times or [])]
        self.with_flows = flows and bool(getattr(store, "has_flows", True))
        if times == "all":
            targets += list(range(len(self.extra_times)))
        # (store row, target) pairs; plain integer arrays pickle cheaply to workers.
        self._rows = np.repeat(rows, len(targets))
        self._targets = np.tile(np.asarray(targets, dtype=np.int64), len(rows))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        row, target = int(self._rows[i]), int(self._targets[i])
        rng = np.random.default_rng((self.seed, self.epoch, i)) if self.augment else None
        window = None
        if self.crop is not None:  # read only the crop: a tiled store decodes just the tiles it touches
            window = (*self._window(self.store.height, self.store.width, rng), *self.crop)
        frames = self.store.frames(row, window)  # (3, h, w, 3) uint8
        img0, img1 = frames[0], frames[2]
        if target == MIDDLE:
            tgt, t = frames[1], 0.5
        else:
            tgt, t = self.store.extra(row, window)[target], self.extra_times[target]
        # Two-channel flow fields that must follow the frames through every augmentation, as
        # stored (float16): flips are views here, and _fields makes the one float32 copy.
        fields: dict[str, np.ndarray] = {}
        if self.with_flows:
            flows = self.store.flows(row, window, dtype=None)  # (2, 2, h, w): [0] = 1 -> 3, [1] = 3 -> 1
            fields["flow_01"], fields["flow_10"] = flows[0], flows[1]
        if self.prior_from == "store":
            prior = self.store.prior(row, window, dtype=None)  # (4, h, w): 1 -> 3, 3 -> 1
            fields["prior_01"], fields["prior_10"] = prior[:2], prior[2:]

        flip_x = flip_y = False
        if rng is not None:
            if rng.random() < 0.5:  # mirror left-right: x displacements change sign
                flip_x = True
                img0, img1, tgt = (a[:, ::-1] for a in (img0, img1, tgt))
                fields = {k: f[:, :, ::-1] for k, f in fields.items()}
            if rng.random() < 0.5:  # mirror top-bottom: y displacements change sign
                flip_y = True
                img0, img1, tgt = (a[::-1] for a in (img0, img1, tgt))
                fields = {k: f[:, ::-1] for k, f in fields.items()}
            if rng.random() < 0.5:  # play backwards: the target sits at 1 - t between swapped ends
                img0, img1 = img1, img0
                fields = {_REVERSED[k]: f for k, f in fields.items()}
                t = 1.0 - t
            if self.colour:
                img0, img1, tgt = recolour((img0, img1, tgt), rng)

        sample = {
            "img0": _image(img0, self.compact),
            "img1": _image(img1, self.compact),
            "target": _image(tgt, self.compact),
            "t": torch.tensor(t, dtype=torch.float32),
            "index": torch.tensor(row, dtype=torch.int64),
        }
        if self.prior_from == "frames":  # on the final (cropped, flipped, reversed) frames
            sample["prior"] = torch.from_numpy(dis_flow_pair(img0, img1, self.prior))
        elif self.prior_from == "store":
            sample["prior"] = _fields([fields["prior_01"], fields["prior_10"]], flip_x, flip_y, self.compact)
        if self.with_flows:
            sample["flow_01"] = _fields([fields["flow_01"]], flip_x, flip_y, self.compact)
            sample["flow_10"] = _fields([fields["flow_10"]], flip_x, flip_y, self.compact)
        return sample

    def _window(self, height: int, width: int, rng: np.random.Generator | None) -> tuple[int, int]:
        h, w = self.crop
        if rng is None:
            return (height - h) // 2, (width - w) // 2
        return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))


def recolour(frames: tuple[np.ndarray, ...], rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """The same random recolouring of every (h, w, 3) uint8 frame: channels permuted, then a
    gamma in [0.6, 1.6] per channel (a 256-entry lookup table, cheap on uint8)."""
    order = rng.permutation(3)
    gammas = np.exp(rng.uniform(np.log(0.6), np.log(1.6), size=3))
    levels = np.arange(256, dtype=np.float64) / 255
    luts = [np.round(255 * levels ** g).astype(np.uint8) for g in gammas]
    out = []
    for f in frames:
        f = f[..., order]
        out.append(np.stack([luts[c][f[..., c]] for c in range(3)], axis=-1))
    return tuple(out)


_REVERSED = {"flow_01": "flow_10", "flow_10": "flow_01", "prior_01": "prior_10", "prior_10": "prior_01"}


def _fields(parts: list[np.ndarray], flip_x: bool, flip_y: bool, compact: bool = False) -> torch.Tensor:
    """float32 (2k, h, w) from k (2, h, w) flow views in one copy; x (y) components negated after
    a left-right (top-bottom) mirror. Negation and float16 -> float32 are exact. ``compact``
    keeps float16 parts float16 (never rounds float32 ones)."""
    h, w = parts[0].shape[-2:]
    dtype = np.float16 if compact and all(p.dtype == np.float16 for p in parts) else np.float32
    out = np.empty((2 * len(parts), h, w), dtype)
    for j, part in enumerate(parts):
        out[2 * j : 2 * j + 2] = part
    if flip_x:
        out[0::2] *= -1.0
    if flip_y:
        out[1::2] *= -1.0
    return torch.from_numpy(out)


def _image(a: np.ndarray, compact: bool = False) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float32 in [0, 1] (``compact``: uint8, see ``to_float``)."""
    chw = torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))
    return chw if compact else _as_float_image(chw)


def _as_float_image(u8: torch.Tensor) -> torch.Tensor:
    return u8.float().div_(255.0)


IMAGE_KEYS = ("img0", "img1", "target")


def to_float(batch: dict[str, Any]) -> dict[str, Any]:
    """A (batch of) ``compact`` sample(s) as the float32 one, bit for bit: uint8 images to [0, 1],
    float16 flows to float32. Float samples pass through unchanged."""
    out = dict(batch)
    for key, value in batch.items():
        if not isinstance(value, torch.Tensor):
            continue
        if key in IMAGE_KEYS and value.dtype == torch.uint8:
            out[key] = _as_float_image(value)
        elif value.dtype == torch.float16:
            out[key] = value.float()
    return out


def _store_path(store: Any) -> str:
    return str(getattr(store, "path", store))
