"""Which frame goes where: the output timeline of `animvfi interpolate`, as pure functions.

Positions are measured in source frames (source frame ``i`` sits at position ``i``) and kept as
exact fractions, so 24 -> 60 or 30000/1001 -> 60 never drifts. Every output frame is either a copy
of one source frame or an in-between of two source frames at some ``t`` in (0, 1).

The rules (docs/interpolate.md explains them for users):

- Output frame ``j`` shows source position ``p_j = j * fps_in / fps_out``. A clip of ``n`` frames
  lasts ``n / fps_in`` seconds; the output keeps that duration, so it has
  ``ceil(n * fps_out / fps_in)`` frames (``n * factor`` with ``--factor``). Positions past the
  last source frame hold it, exactly as the input shows it for one frame period.
- A scene cut at ``c`` (frame ``c`` starts a new shot) is never interpolated across: positions in
  ``(c - 1, c)`` copy the nearest of the two frames.
- Without dedup, positions between a frame and its duplicate copy the frame (no model call).
- With dedup, only the distinct drawings are anchors, each at the position where it first appears
  (what the animator timed, and where the lip sync is). Positions between two anchors are
  interpolated along that interval, so a clip on twos moves evenly instead of step-hold-step.
  A drawing held longer than ``max_hold`` frames is a real pause, not a slow move: it stays still,
  and the move to the next drawing takes the clip's usual step (the most common gap up to
  ``max_hold``). After the last drawing of a scene or clip there is nothing to move towards, so
  that drawing is held.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterable, Iterator, Sequence

import numpy as np

SOURCE = "source"  # a copy of the source frame at an integer position
INTERPOLATED = "interpolated"
HOLD = "hold"  # a copy because the drawing does not change (duplicate, pause, end of shot/clip)
CUT = "cut"  # a copy because the two neighbours belong to different shots


@dataclass(frozen=True, slots=True)  # slots: a feature film is ~200k of these
class OutputFrame:
    """One output frame: ``src0`` copied (``t == 0``) or the in-between of ``src0``/``src1`` at ``t``."""

    position: Fraction
    src0: int
    src1: int
    t: float
    kind: str

    @property
    def is_copy(self) -> bool:
        return self.t == 0.0


def parse_rate(text: str | float | int | Fraction) -> Fraction:
    """A frame rate from ``"60"``, ``"59.94"``, ``"60000/1001"`` or a number, as an exact fraction."""
    try:
        rate = Fraction(str(text).strip())
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"not a frame rate: {text!r} (use e.g. 60, 59.94 or 60000/1001)") from None
    if rate <= 0:
        raise ValueError(f"frame rate must be positive, got {text!r}")
    return rate


def output_count(n_src: int, fps_in: Fraction, fps_out: Fraction) -> int:
    """Number of output frames that cover the ``n_src / fps_in`` seconds of the input."""
    return math.ceil(Fraction(n_src) * Fraction(fps_out) / Fraction(fps_in))


def output_positions(n_src: int, fps_in: Fraction, fps_out: Fraction) -> Iterator[Fraction]:
    """Source position of every output frame (see the module docstring)."""
    step = Fraction(fps_in) / Fraction(fps_out)
    return (j * step for j in range(output_count(n_src, fps_in, fps_out)))


def usual_step(anchors: Sequence[int], cuts: Iterable[int], max_hold: int) -> int:
    """The clip's animation step: the most common gap (<= ``max_hold``) between drawings of a shot.

    1 for a clip on ones, 2 on twos; ties go to the smaller step, and a clip with no regular gaps
    counts as on ones.
    """
    cut_set = set(cuts)
    gaps = Counter(int(b - a) for a, b in zip(anchors, anchors[1:]) if b not in cut_set and b - a <= max_hold)
    if not gaps:
        return 1
    best = max(gaps.values())
    return min(g for g, count in gaps.items() if count == best)


def plan_frames(n_src: int, fps_in: Fraction, fps_out: Fraction, **options) -> list[OutputFrame]:
    """The whole output timeline as a list (see :func:`iter_plan` for the arguments)."""
    return list(iter_plan(n_src, fps_in, fps_out, **options))


def iter_plan(
    n_src: int,
    fps_in: Fraction,
    fps_out: Fraction,
    *,
    cuts: Iterable[int] = (),
    duplicates: Iterable[int] = (),
    dedup: bool = False,
    max_hold: int = 3,
) -> Iterator[OutputFrame]:
    """The output timeline, one frame at a time (a long film need not be planned in memory).

    n_src: number of source frames (>= 1). cuts: indices ``c`` of frames that start a new shot.
    duplicates: indices ``i`` of frames that repeat frame ``i - 1`` (held drawings).
    dedup: re-time from the distinct drawings (see module docstring). max_hold: longest hold, in
    frames, that still counts as animation timing (on ones/twos/threes) rather than a pause.

    Source indices only grow along the timeline, and an in-between never needs a frame that lies
    strictly between its two sources again later: the renderer relies on both to stream.
    """
    if n_src < 1:
        raise ValueError("need at least one source frame")
    if max_hold < 1:
        raise ValueError(f"max_hold must be >= 1, got {max_hold}")
    cut_set = {c for c in cuts if 0 < c < n_src}
    dup_set = {d for d in duplicates if 0 < d < n_src} - cut_set
    # Per-frame bookkeeping as arrays: a few bytes per source frame, even for a feature film.
    is_anchor = np.ones(n_src, dtype=bool)
    if dedup and dup_set:
        is_anchor[np.fromiter(dup_set, dtype=np.int64)] = False
    anchors = np.flatnonzero(is_anchor)
    step = usual_step(anchors, cut_set, max_hold) if dedup else 1
    # The anchor at or before each source frame (a duplicate shows the drawing of its anchor).
    anchor_of = np.maximum.accumulate(np.where(is_anchor, np.arange(n_src), 0))
    # For each anchor: the next anchor in the same shot, or -1 at the end of a shot / the clip.
    next_anchor = np.full(n_src, -1, dtype=np.int64)
    next_anchor[anchors[:-1]] = anchors[1:]
    if cut_set:
        next_anchor[np.isin(next_anchor, np.fromiter(cut_set, dtype=np.int64))] = -1

    for p in output_positions(n_src, fps_in, fps_out):
        yield _place(p, n_src, cut_set, dup_set, dedup, max_hold, step, anchor_of, next_anchor)


def _place(p, n_src, cut_set, dup_set, dedup, max_hold, step, anchor_of, next_anchor) -> OutputFrame:
    i = min(math.floor(p), n_src - 1)
    frac = p - i
    if i + 1 in cut_set and frac > 0:
        nearest = i if frac < Fraction(1, 2) else i + 1
        return OutputFrame(p, nearest, nearest, 0.0, CUT)
    if not dedup:
        if frac == 0:
            return OutputFrame(p, i, i, 0.0, SOURCE)
        if i + 1 >= n_src or i + 1 in dup_set:
            return OutputFrame(p, i, i, 0.0, HOLD)
        return OutputFrame(p, i, i + 1, float(frac), INTERPOLATED)

    a = int(anchor_of[i])
    if p == a:
        return OutputFrame(p, a, a, 0.0, SOURCE)
    b = int(next_anchor[a])
    if b < 0:
        return OutputFrame(p, a, a, 0.0, HOLD)
    gap = b - a
    start = a if gap <= max_hold else b - min(step, gap)
    if p <= start:
        return OutputFrame(p, a, a, 0.0, HOLD)
    return OutputFrame(p, a, b, float((p - start) / (b - start)), INTERPOLATED)
