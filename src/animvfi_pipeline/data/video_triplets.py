"""From one clip's analysis to the triplets worth training on, and which split each shot goes to.

A clip is split into shots at scene cuts, held drawings are collapsed to one frame per drawing
(ATD-12K's triplets are three distinct drawings, not three video frames), and a triplet is three
drawings of one shot: consecutive (gap 1), or with ``g - 1`` drawings skipped between each
(gap ``g``) for larger motion. Triplets that teach nothing are dropped and counted:

- ``flash``: a frame between the ends is much brighter or darker than the ends' straight line
  (a flash, a fade, an impact frame): no in-between of the ends looks like it.
- ``cut``: the two ends differ as much as two shots do (a cut the detector missed, or a
  whole-picture change such as a fast camera move) -- found on the stored frames.
- ``static``: almost nothing moves between the ends (99th percentile of the pseudo flow below
  ``min_motion`` pixels): the answer would be "copy a frame".
- ``too_much_motion``: the pseudo flow's 99th percentile is beyond ``max_motion`` of the frame
  width: the in-between cannot be told from the ends, and the pseudo flow itself is unreliable.
"""
from __future__ import annotations

import fnmatch
import hashlib
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from animvfi_pipeline.inference.scenes import ClipAnalysis, distinct_drawings, scene_score, thumbnail, triplets_of
from animvfi_pipeline.inference.video_io import ClipInfo

DROP_REASONS = ("flash", "cut", "static", "too_much_motion")


@dataclass(frozen=True)
class PlannedTriplet:
    shot: int  # index of the shot in its clip
    gap: int
    frames: tuple[int, int, int]  # frame indices in the clip


@dataclass
class ClipPlan:
    """What one clip contributes: its triplets, and what was dropped before decoding."""

    rel: str  # path below the video folder
    info: ClipInfo
    n_shots: int
    triplets: list[PlannedTriplet]
    dropped: dict[str, int] = field(default_factory=dict)
    shot_splits: dict[int, str] = field(default_factory=dict)

    def timestamp(self, frame: int) -> float:
        """Seconds from the first frame, at the clip's nominal rate."""
        return frame / float(self.info.fps)


def plan_clip(rel: str, info: ClipInfo, analysis: ClipAnalysis, gaps: Sequence[int], scene_threshold: float,
              dup_threshold: float, flash_threshold: float) -> ClipPlan:
    """Shots, distinct drawings and candidate triplets of one analysed clip, in order of their
    last frame (the order a decoder can produce them in); ``flash`` triplets are dropped here."""
    shots = distinct_drawings(analysis, scene_threshold, dup_threshold)
    triplets, dropped = [], dict.fromkeys(DROP_REASONS, 0)
    for s, drawings in enumerate(shots):
        for g in gaps:
            for frames in triplets_of([drawings], (g,)):
                if has_flash(analysis.brightness, frames[0], frames[2], flash_threshold):
                    dropped["flash"] += 1
                else:
                    triplets.append(PlannedTriplet(s, g, frames))
    triplets.sort(key=lambda t: (t.frames[2], t.frames[0]))
    return ClipPlan(rel, info, len(shots), triplets, dropped)


def has_flash(brightness: Sequence[float], first: int, last: int, threshold: float) -> bool:
    """Whether a frame in ``first..last`` departs from the straight line between the ends'
    brightness by more than ``threshold`` (brightness in [0, 1])."""
    a, c = brightness[first], brightness[last]
    return any(abs(brightness[j] - (a + (c - a) * (j - first) / (last - first))) > threshold
               for j in range(first + 1, last))


def motion_verdict(frames: np.ndarray, flow_13: np.ndarray | None, scene_threshold: float,
                   min_motion: float, max_motion: float) -> str | None:
    """The drop reason of a decoded triplet (uint8 (3, H, W, 3) at the stored size), or None.

    ``flow_13``: the pseudo flow frame1 -> frame3 (2, H, W), or None when no flow is stored
    (then only the ``cut`` rule applies).
    """
    if scene_score(thumbnail(frames[0]), thumbnail(frames[2])) > scene_threshold:
        return "cut"
    if flow_13 is None:
        return None
    magnitude = float(np.percentile(np.hypot(flow_13[0], flow_13[1]), 99))
    if magnitude < min_motion:
        return "static"
    if magnitude > max_motion * frames.shape[2]:
        return "too_much_motion"
    return None


def shot_draw(seed: int, rel: str, shot: int) -> float:
    """A number in [0, 1) fixed by the shot's identity alone: adding a clip never moves the
    shots already there to another split."""
    digest = hashlib.sha256(f"{seed}:{rel}:{shot}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2 ** 64


def assign_shot_splits(plans: Sequence[ClipPlan], val_fraction: float, test_fraction: float, seed: int,
                       val_files: Sequence[str] = (), test_files: Sequence[str] = ()) -> None:
    """Set ``plan.shot_splits``: whole shots, never part of one, go to train, val or test.

    Clips matching a ``test_files`` / ``val_files`` pattern (fnmatch on the relative path) go
    there whole. Other shots are drawn: ``test`` below ``test_fraction``, ``val`` below
    ``test_fraction + val_fraction``. If a split with a positive fraction drew no shot with
    triplets while train has two or more, the train shot with the lowest draw moves there.
    """
    draws = {}
    for plan in plans:
        whole = ("test" if _matches(plan.rel, test_files) else "val" if _matches(plan.rel, val_files) else None)
        for s in range(plan.n_shots):
            u = shot_draw(seed, plan.rel, s)
            plan.shot_splits[s] = whole or ("test" if u < test_fraction else
                                            "val" if u < test_fraction + val_fraction else "train")
            if whole is None and any(t.shot == s for t in plan.triplets):
                draws[(plan.rel, s)] = (u, plan)
    for split, fraction in (("val", val_fraction), ("test", test_fraction)):
        used = [key for key, (_, plan) in draws.items() if plan.shot_splits[key[1]] == split]
        train = sorted((u, key) for key, (u, plan) in draws.items() if plan.shot_splits[key[1]] == "train")
        if fraction > 0 and not used and len(train) >= 2:
            key = train[0][1]
            draws[key][1].shot_splits[key[1]] = split


def _matches(rel: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatch(rel, p) for p in patterns)
