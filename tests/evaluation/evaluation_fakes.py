"""An in-memory stand-in for TripletStore's reading interface, with triplets we fully control."""
from __future__ import annotations

import numpy as np
import pandas as pd

H, W = 32, 48


class FakeStore:
    """Test triplets of flat random colours with a textured band; frame2 is the exact mean
    of frame1 and frame3, so ``blend`` is perfect and ``repeat`` is not."""

    path = "memory://fake-store"
    height, width = H, W
    has_flows = True

    def __init__(self, names: list[str], levels: list[int], motions: list[str], split: str = "test"):
        rng = np.random.default_rng(0)
        self._frames = []
        for _ in names:
            f1 = rng.integers(0, 128, (H, W, 3)).astype(np.uint8) * 2
            f3 = rng.integers(0, 128, (H, W, 3)).astype(np.uint8) * 2
            self._frames.append(np.stack([f1, (f1 // 2 + f3 // 2).astype(np.uint8), f3]))
        n = len(names)
        self.meta = pd.DataFrame({
            "name": names, "split": [split] * n, "clip": ["c"] * n, "level": levels,
            "roi_x": [4] * n, "roi_y": [4] * n, "roi_w": [24] * n, "roi_h": [16] * n,
            "motion_type": motions, "behavior": ["walking"] * n, "flow_source": ["gt"] * n,
            "orig_width": [W] * n, "orig_height": [H] * n,
        })

    def __len__(self) -> int:
        return len(self._frames)

    def indices(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.meta["split"].to_numpy() == split)

    def frames(self, i: int) -> np.ndarray:
        return self._frames[i]

    def flows(self, i: int) -> np.ndarray:
        flow = np.zeros((2, 2, H, W), np.float32)
        flow[0, 0] = np.linspace(-3, 3, W)[None]
        flow[1] = -flow[0]
        return flow


def default_store() -> FakeStore:
    return FakeStore(
        ["Japan_v1_0_000010_s1", "Disney_v2_0_000020_s1", "Japan_v1_1_000030_s2", "Synth_v0_0_000040_s1"],
        [0, 2, 0, -1],
        ["translation", "rotation", "translation", "unknown"],
    )
