"""A folder of a studio's own clips: every video file and every folder of PNG/JPG frames in it.

Only paths are gathered here; frames are decoded later, one at a time (inference/video_io.py).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from animvfi_pipeline.errors import DataError
from animvfi_pipeline.inference.video_io import IMAGE_SUFFIXES, natural_key

# Containers taken as videos; anything FFmpeg decodes inside them works (PyAV is FFmpeg).
VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".webm", ".gif", ".m4v", ".avi")


@dataclass(frozen=True)
class VideoFolder:
    """The clips under ``root``, in a stable order (natural sort of their relative paths)."""

    root: Path
    clips: tuple[Path, ...]

    @classmethod
    def scan(cls, root: str | Path) -> VideoFolder:
        return cls(Path(root), tuple(find_clips(root)))

    def relative(self, clip: Path) -> str:
        """The clip's name in the store and the reports: its path below the root, with ``/``."""
        rel = clip.relative_to(self.root).as_posix()
        return rel if rel != "." else clip.name

    def __len__(self) -> int:
        return len(self.clips)


def find_clips(root: str | Path) -> list[Path]:
    """Every video file and every folder holding frames under ``root``, recursively.

    Hidden names (``.``) are left out: they are the temporaries of interrupted writers (ours and
    other tools'), never clips. A folder of frames may also hold sub-folders, which are clips of
    their own.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "video folder does not exist; put your clips (or folders of frames) there")
    clips = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        visible = [f for f in files if not f.startswith(".")]
        if any(Path(f).suffix.lower() in IMAGE_SUFFIXES for f in visible):
            clips.append(Path(folder))
        clips += [Path(folder) / f for f in visible if Path(f).suffix.lower() in VIDEO_SUFFIXES]
    return sorted(clips, key=lambda p: natural_key(p.relative_to(root).as_posix()))
