"""Synthetic animation clips with known structure: shots, held drawings and the true in-betweens.

A clip is a sequence of shots; each shot is one generated scene (``make_scene``) sampled at
``frames_per_window`` drawings per window of its clock, so consecutive drawings are a fraction of
a window apart and motion is linear between them. Each drawing is shown ``hold`` frames in a row
(anime "on twos" is ``hold=2``). ``truth`` can render any drawing at any fractional position, so
a test or a benchmark can score an interpolated frame exactly, and ``cuts`` / ``drawing_of``
say where the shots change and which drawing every frame shows.

Used by the video-ingestion and test-time-adaptation tests and benchmarks (issue #10); writes
mp4 or any container PyAV encodes, or a folder of PNG frames.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from animvfi_pipeline.data.synthetic_builder import make_scene
from animvfi_pipeline.data.synthetic_scene import CartoonScene


@dataclass(frozen=True)
class Shot:
    seed: int
    drawings: int  # distinct drawings in the shot
    hold: int = 1  # frames each drawing is shown (2 = on twos)
    style: str = "cel"
    level: int | None = None


@dataclass
class SyntheticClip:
    """Frames of a clip plus the ground truth that produced them."""

    width: int
    height: int
    frames_per_window: int
    shots: list[Shot]
    scenes: list[CartoonScene] = field(default_factory=list)
    drawing_of: list[tuple[int, int]] = field(default_factory=list)  # frame -> (shot, drawing)

    @property
    def n_frames(self) -> int:
        return len(self.drawing_of)

    @property
    def cuts(self) -> list[int]:
        """Frame indices that start a new shot (the first frame excluded)."""
        return [i for i in range(1, self.n_frames) if self.drawing_of[i][0] != self.drawing_of[i - 1][0]]

    @property
    def holds(self) -> list[int]:
        """Frame indices that repeat the previous frame's drawing."""
        return [i for i in range(1, self.n_frames) if self.drawing_of[i] == self.drawing_of[i - 1]]

    def truth(self, shot: int, position: float) -> np.ndarray:
        """The drawing at (possibly fractional) drawing index ``position`` of ``shot``: uint8 RGB."""
        scene = self.scenes[shot]
        clock = position / self.frames_per_window
        k = min(int(clock), scene.n_windows - 1)
        return scene.window(k).render(clock - k)

    def frame(self, i: int) -> np.ndarray:
        shot, drawing = self.drawing_of[i]
        return self.truth(shot, drawing)

    def iter_frames(self):
        """Every frame in order, each drawing rendered once however long it is held."""
        last_key, last = None, None
        for key in self.drawing_of:
            if key != last_key:
                last_key, last = key, self.truth(*key)
            yield last


def make_clip(shots: list[Shot], width: int, height: int, frames_per_window: int = 2) -> SyntheticClip:
    """A clip of ``shots`` at ``width`` x ``height``; nothing is rendered until frames are asked for."""
    if frames_per_window < 1:
        raise ValueError(f"frames_per_window must be >= 1, got {frames_per_window}")
    clip = SyntheticClip(width, height, frames_per_window, list(shots))
    for s, shot in enumerate(shots):
        if shot.drawings < 2 or shot.hold < 1:
            raise ValueError(f"shot {s}: needs >= 2 drawings and hold >= 1, got {shot}")
        windows = -(-(shot.drawings - 1) // frames_per_window)  # enough clock for every drawing
        clip.scenes.append(make_scene(shot.seed, width, height, level=shot.level, n_windows=max(1, windows),
                                      style=shot.style))
        clip.drawing_of += [(s, d) for d in range(shot.drawings) for _ in range(shot.hold)]
    return clip


def write_clip(clip: SyntheticClip, path: str | Path, fps: int = 24, crf: int = 12, preset: str = "medium") -> Path:
    """Encode ``clip`` to ``path`` (.mp4/.mkv/.mov/.webm: H.264 or VP9 at high quality; a path
    without a suffix: a folder of PNG frames). Returns the path."""
    path = Path(path)
    if not path.suffix:
        path.mkdir(parents=True, exist_ok=True)
        for i, frame in enumerate(clip.iter_frames()):
            cv2.imwrite(str(path / f"{i:05d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        return path
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    codec = "libvpx-vp9" if path.suffix.lower() == ".webm" else "libx264"
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = clip.width, clip.height, "yuv420p"
        stream.options = {"crf": str(crf), "preset": preset} if codec == "libx264" else {"crf": str(crf), "b:v": "0"}
        for frame in clip.iter_frames():
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
