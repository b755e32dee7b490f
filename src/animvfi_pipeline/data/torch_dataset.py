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
    times: ``"middle"`` trains on frame2 (t = 0.5) only; ``"all"`` adds the store's extra frames
        at their own t (arbitrary-t training), one sample per target frame.
    flows: ``False`` skips reading the flows (VFI training does not need them; at 960x540 they
        are most of the bytes read per sample).
    prior: a DIS preset: also return ``"prior"``, the (4, H, W) DIS flows of the sample's two
        frames that a FlowNet with ``init="dis"`` refines, computed here in the DataLoader worker
        rather than in the training process (where, on a GPU, it would hold up every step).
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
    ):
        if times not in ("middle", "all"):
            raise ValueError(f"times must be 'middle' or 'all', not {times!r}")
        self.store = store
        self.split = split
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self.prior = prior
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
        frames = self.store.frames(row)  # (3, H, W, 3) uint8
        if self.with_flows:
            flows = self.store.flows(row)  # (2, 2, H, W): [0] = 1 -> 3, [1] = 3 -> 1
        else:  # placeholders that follow the crops and flips cheaply, dropped at the end
            flows = np.zeros((2, 2, *frames.shape[1:3]), np.float32)
        img0, img1 = frames[0], frames[2]
        if target == MIDDLE:
            tgt, t = frames[1], 0.5
        else:
            tgt, t = self.store.extra(row)[target], self.extra_times[target]
        flow_01, flow_10 = flows[0], flows[1]

        rng = np.random.default_rng((self.seed, self.epoch, i)) if self.augment else None
        if self.crop is not None:
            y, x = self._window(frames.shape[1], frames.shape[2], rng)
            h, w = self.crop
            img0, img1, tgt = (a[y : y + h, x : x + w] for a in (img0, img1, tgt))
            flow_01, flow_10 = (f[:, y : y + h, x : x + w] for f in (flow_01, flow_10))
        if rng is not None:
            if rng.random() < 0.5:  # mirror left-right: x displacements change sign
                img0, img1, tgt = (a[:, ::-1] for a in (img0, img1, tgt))
                flow_01, flow_10 = (f[:, :, ::-1] * _SIGN_X for f in (flow_01, flow_10))
            if rng.random() < 0.5:  # mirror top-bottom: y displacements change sign
                img0, img1, tgt = (a[::-1] for a in (img0, img1, tgt))
                flow_01, flow_10 = (f[:, ::-1] * _SIGN_Y for f in (flow_01, flow_10))
            if rng.random() < 0.5:  # play backwards: the target sits at 1 - t between swapped ends
                img0, img1 = img1, img0
                flow_01, flow_10 = flow_10, flow_01
                t = 1.0 - t

        sample = {
            "img0": _image(img0),
            "img1": _image(img1),
            "target": _image(tgt),
            "t": torch.tensor(t, dtype=torch.float32),
            "index": torch.tensor(row, dtype=torch.int64),
        }
        if self.prior is not None:  # on the final (cropped, flipped, reversed) frames
            sample["prior"] = torch.from_numpy(dis_flow_pair(img0, img1, self.prior))
        if self.with_flows:
            sample["flow_01"] = torch.from_numpy(np.ascontiguousarray(flow_01, dtype=np.float32))
            sample["flow_10"] = torch.from_numpy(np.ascontiguousarray(flow_10, dtype=np.float32))
        return sample

    def _window(self, height: int, width: int, rng: np.random.Generator | None) -> tuple[int, int]:
        h, w = self.crop
        if rng is None:
            return (height - h) // 2, (width - w) // 2
        return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))


_SIGN_X = np.array([-1.0, 1.0], dtype=np.float32)[:, None, None]
_SIGN_Y = np.array([1.0, -1.0], dtype=np.float32)[:, None, None]


def _image(a: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float32 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))).float().div_(255.0)


def _store_path(store: Any) -> str:
    return str(getattr(store, "path", store))
