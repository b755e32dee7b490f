"""Scene cuts and held drawings, found from consecutive-frame differences on small thumbnails.

Two different measures, because the two questions differ:

- A **cut** changes the whole picture: ``scene_score`` is the mean absolute RGB difference of the
  two frames shrunk to 64 px on the long side (in [0, 1]). Shrinking averages away motion detail
  and compression noise, so ordinary motion stays well below a cut between two shots. A fixed
  threshold alone misses quiet cuts (two shots with similar layouts and tones score ~0.10, below
  0.12), so a transition also counts as a cut when it **stands out of its neighbourhood** twice
  over: its scene score and its ``colour_change`` (distance between the two frames' colour
  histograms, which motion barely moves) are both ``CUT_CONTRAST`` times those of the ordinary
  transitions around it, and the scene score is at least a third of the threshold. Motion that
  is fast everywhere in a shot raises the neighbourhood with it, so it does not stand out.
- A **held drawing** changes nothing anywhere: ``local_change`` is the largest change of any
  small patch, i.e. the per-pixel difference (largest channel) of 480 px thumbnails averaged over
  5x5 windows, then the maximum over the picture. Codec noise and grain are scattered, so the
  window averages them away (about 0.01-0.07 on real re-encoded holds), while a blinking eye or
  a moving mouth on a still body is a solid patch of change and scores far higher (0.4+), even
  though it covers a tiny part of the frame.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
from tqdm import tqdm

from animvfi_pipeline.inference.video_io import ClipInfo, read_frames

THUMB_SIDE = 480
SCENE_SIDE = 64
PATCH = 5

DEFAULT_SCENE_THRESHOLD = 0.12
DEFAULT_DUP_THRESHOLD = 0.07
CUT_CONTRAST = 2.5  # how far a quiet cut must stand out of the transitions around it
NEIGHBOURHOOD = 12  # transitions looked at on each side of a candidate cut
# Floors for a neighbourhood of near-still transitions, so that any small change does not stand out.
MIN_SCENE_REFERENCE = 0.01
MIN_COLOUR_REFERENCE = 0.02
COLOUR_BINS = 4  # per channel: 64 joint RGB bins, coarse enough that motion barely moves pixels between bins


def thumbnail_size(width: int, height: int, long_side: int = THUMB_SIDE) -> tuple[int, int]:
    """(w, h) of the analysis thumbnail: at most ``long_side`` on the long side, same aspect."""
    scale = min(1.0, long_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def thumbnail(frame: np.ndarray, long_side: int = THUMB_SIDE) -> np.ndarray:
    """``frame`` (H, W, 3) uint8 shrunk by area averaging to ``long_side``; float32 in [0, 1].

    A frame already that small (e.g. decoded at thumbnail size) is only converted.
    """
    h, w = frame.shape[:2]
    size = thumbnail_size(w, h, long_side)
    small = cv2.resize(frame, size, interpolation=cv2.INTER_AREA) if size != (w, h) else frame
    return small.astype(np.float32) / 255.0


def scene_score(thumb_a: np.ndarray, thumb_b: np.ndarray) -> float:
    """Mean absolute difference of two thumbnails at ``SCENE_SIDE`` px, in [0, 1]."""
    a = _shrink(thumb_a, SCENE_SIDE)
    b = _shrink(thumb_b, SCENE_SIDE)
    return float(np.abs(a - b).mean())


def colour_histogram(thumb: np.ndarray) -> np.ndarray:
    """Share of the ``SCENE_SIDE`` thumbnail's pixels in each of the joint RGB bins (sums to 1)."""
    small = _shrink(thumb, SCENE_SIDE)
    q = np.minimum((small * COLOUR_BINS).astype(np.int64), COLOUR_BINS - 1)
    index = (q[..., 0] * COLOUR_BINS + q[..., 1]) * COLOUR_BINS + q[..., 2]
    counts = np.bincount(index.ravel(), minlength=COLOUR_BINS ** 3).astype(np.float64)
    return counts / counts.sum()


def colour_change(hist_a: np.ndarray, hist_b: np.ndarray) -> float:
    """Total variation distance of two colour histograms, in [0, 1]: the share of pixels that
    would have to change colour bin. A moving character keeps its colours; a new shot does not."""
    return float(0.5 * np.abs(hist_a - hist_b).sum())


def local_change(thumb_a: np.ndarray, thumb_b: np.ndarray) -> float:
    """Largest mean difference over any ``PATCH`` x ``PATCH`` window of two thumbnails, in [0, 1]."""
    diff = np.abs(thumb_a - thumb_b).max(axis=2)
    return float(cv2.blur(diff, (PATCH, PATCH)).max())


def _shrink(img: np.ndarray, long_side: int) -> np.ndarray:
    h, w = img.shape[:2]
    scale = min(1.0, long_side / max(h, w))
    if scale == 1.0:
        return img
    return cv2.resize(img, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


@dataclass
class ClipAnalysis:
    """Per-transition scores of a clip; index ``i`` compares frame ``i`` with frame ``i + 1``."""

    n_frames: int = 0
    scene_scores: list[float] = field(default_factory=list)
    local_changes: list[float] = field(default_factory=list)
    colour_changes: list[float] = field(default_factory=list)
    brightness: list[float] = field(default_factory=list)  # per frame: mean of the thumbnail, in [0, 1]

    def cuts(self, scene_threshold: float = DEFAULT_SCENE_THRESHOLD,
             dup_threshold: float = DEFAULT_DUP_THRESHOLD) -> list[int]:
        """Indices of frames that start a new shot: a scene score above ``scene_threshold``, or a
        quiet cut that stands out of its neighbourhood (module docstring). A threshold of 1 or
        more disables cuts."""
        if scene_threshold >= 1.0:  # scores are in [0, 1]: the user asked for no cuts at all
            return []
        moving = [c >= dup_threshold for c in self.local_changes]
        out = []
        for i, score in enumerate(self.scene_scores):
            if score > scene_threshold or (score > scene_threshold / 3 and self._stands_out(i, moving)):
                out.append(i + 1)
        return out

    def _stands_out(self, i: int, moving: list[bool]) -> bool:
        if len(self.colour_changes) != len(self.scene_scores):  # built without colour information
            return False
        scene_ref = self._reference(self.scene_scores, i, moving, MIN_SCENE_REFERENCE)
        colour_ref = self._reference(self.colour_changes, i, moving, MIN_COLOUR_REFERENCE)
        return (self.scene_scores[i] >= CUT_CONTRAST * scene_ref
                and self.colour_changes[i] >= CUT_CONTRAST * colour_ref)

    @staticmethod
    def _reference(values: list[float], i: int, moving: list[bool], floor: float) -> float:
        """The larger of the medians of the moving transitions just before and just after ``i``:
        a cut has to stand out of both shots it separates. Holds are left out (they score 0)."""
        sides = (range(max(0, i - NEIGHBOURHOOD), i), range(i + 1, min(len(values), i + 1 + NEIGHBOURHOOD)))
        medians = [float(np.median([values[j] for j in side if moving[j]]))
                   for side in sides if any(moving[j] for j in side)]
        return max([floor, *medians])

    def duplicates(self, dup_threshold: float = DEFAULT_DUP_THRESHOLD) -> list[int]:
        """Indices of frames that repeat the previous one (held drawings)."""
        return [i + 1 for i, c in enumerate(self.local_changes) if c < dup_threshold]


class FrameAnalyzer:
    """Feed frames in order; keeps only the previous thumbnail and two floats per frame."""

    def __init__(self) -> None:
        self.analysis = ClipAnalysis()
        self._previous: np.ndarray | None = None
        self._previous_hist: np.ndarray | None = None

    def add(self, frame: np.ndarray) -> None:
        thumb = thumbnail(frame)
        hist = colour_histogram(thumb)
        if self._previous is not None:
            self.analysis.scene_scores.append(scene_score(self._previous, thumb))
            self.analysis.local_changes.append(local_change(self._previous, thumb))
            self.analysis.colour_changes.append(colour_change(self._previous_hist, hist))
        self.analysis.brightness.append(float(thumb.mean()))
        self._previous, self._previous_hist = thumb, hist
        self.analysis.n_frames += 1


def analyse_clip(info: ClipInfo, progress: bool = False) -> ClipAnalysis:
    """Decode every frame of the clip once, at thumbnail size, keeping a few floats per frame.
    DataError (naming the file) if it does not decode to the end."""
    analyzer = FrameAnalyzer()
    with tqdm(total=info.frame_count, unit="frame", desc="analysing", disable=not progress,
              dynamic_ncols=True) as bar:
        for frame in read_frames(info, size=thumbnail_size(info.width, info.height)):
            analyzer.add(frame)
            bar.update()
    return analyzer.analysis


def distinct_drawings(analysis: ClipAnalysis, scene_threshold: float = DEFAULT_SCENE_THRESHOLD,
                      dup_threshold: float = DEFAULT_DUP_THRESHOLD) -> list[list[int]]:
    """Frame indices of the distinct drawings of each shot, in order: a new list at every cut,
    and a held drawing counts once (its first frame). Shots of one drawing are kept as they are;
    callers that need motion skip them."""
    cuts = set(analysis.cuts(scene_threshold, dup_threshold))
    holds = set(analysis.duplicates(dup_threshold)) - cuts
    shots: list[list[int]] = []
    for i in range(analysis.n_frames):
        if i == 0 or i in cuts:
            shots.append([i])
        elif i not in holds:
            shots[-1].append(i)
    return shots


def triplets_of(shots: list[list[int]], gaps: tuple[int, ...] = (1,)) -> list[tuple[int, int, int]]:
    """(first, middle, last) frame indices: drawings ``d``, ``d + g``, ``d + 2g`` of one shot for
    every gap ``g`` in ``gaps`` (1 = three consecutive distinct drawings). Never across a cut."""
    out = []
    for drawings in shots:
        for g in gaps:
            out += [(drawings[d], drawings[d + g], drawings[d + 2 * g]) for d in range(len(drawings) - 2 * g)]
    return out
