"""Reading clips (video files via PyAV, or folders of PNG/JPG frames) and writing them back.

Frames are RGB uint8 ``(H, W, 3)`` arrays. Readers are generators that decode one frame at a
time, so a clip is never held in memory. Writers write to a temporary name beside the target
(see :func:`atomic_output`) so an interrupted run leaves nothing under the requested name.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import cv2
import numpy as np
from av.video.reformatter import ColorRange, Colorspace

from animvfi_pipeline.errors import DataError
from animvfi_pipeline.utils_io import remove_stale_temporaries

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# Output container -> video encoders to try, best first. The input's own codec is tried after.
VIDEO_ENCODERS = {
    ".mp4": ("libx264", "mpeg4"),
    ".m4v": ("libx264", "mpeg4"),
    ".mov": ("libx264", "mpeg4"),
    ".mkv": ("libx264", "mpeg4"),
    ".avi": ("libx264", "mpeg4"),
    ".webm": ("libvpx-vp9", "libvpx"),
    ".gif": ("gif",),
}
# Audio codecs each container takes as they are; anything else is re-encoded (AUDIO_FALLBACK).
AUDIO_COPY_OK = {
    ".mp4": {"aac", "mp3", "alac", "ac3", "eac3", "opus", "flac"},
    ".m4v": {"aac", "mp3", "alac", "ac3", "eac3"},
    ".mov": {"aac", "mp3", "alac", "ac3", "eac3", "pcm_s16le", "pcm_s24le"},
    ".mkv": None,  # Matroska takes any codec
    ".avi": {"mp3", "ac3", "aac", "pcm_s16le"},
    ".webm": {"opus", "vorbis"},
}
AUDIO_FALLBACK = {".webm": "libopus"}  # everything else: "aac"


class OutputError(Exception):
    """The output cannot be written where asked. The message starts with the path."""

    def __init__(self, path: str | Path, problem: str):
        self.path = str(path)
        super().__init__(f"{self.path}: {problem}")


def natural_key(name: str) -> list:
    """Sort key that orders ``frame2.png`` before ``frame10.png``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


@dataclass(frozen=True)
class ClipInfo:
    """What we know about an input before decoding it."""

    path: Path
    width: int
    height: int
    fps: Fraction
    frame_count: int | None  # None when the container does not say (folders always say)
    is_folder: bool
    has_audio: bool = False
    codec: str | None = None
    start_time: float = 0.0  # seconds; the video stream's first timestamp (for audio sync)


def is_folder_output(path: Path) -> bool:
    """A suffix-less path or an existing directory means "write PNG frames into this folder"."""
    return path.is_dir() or path.suffix == ""


def frame_files(folder: Path) -> list[Path]:
    files = [p for p in folder.iterdir()
             if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")]
    return sorted(files, key=lambda p: natural_key(p.name))


def probe(path: str | Path, folder_fps: Fraction = Fraction(24)) -> ClipInfo:
    """Open ``path`` (video file or folder of frames) far enough to know its size and rate."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, "does not exist")
    if path.is_dir():
        files = frame_files(path)
        if not files:
            raise DataError(path, f"folder has no frames ({', '.join(IMAGE_SUFFIXES)})")
        first = _read_image(files[0])
        h, w = first.shape[:2]
        return ClipInfo(path, w, h, Fraction(folder_fps), len(files), is_folder=True)
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DataError(path, "has no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            if not rate:
                raise DataError(path, "does not say its frame rate")
            start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
            return ClipInfo(
                path, stream.codec_context.width, stream.codec_context.height, Fraction(rate),
                stream.frames or None, is_folder=False, has_audio=bool(container.streams.audio),
                codec=stream.codec_context.name, start_time=start,
            )
    except (av.FFmpegError, OSError) as exc:
        raise DataError(path, f"cannot be read as a video ({_reason(exc)})") from None


def read_frames(info: ClipInfo, size: tuple[int, int] | None = None) -> Iterator[np.ndarray]:
    """Yield every frame of the clip in order, RGB uint8; DataError on a bad or truncated input.

    ``size=(w, h)`` shrinks each frame (area averaging) as it is decoded: much cheaper than
    decoding at full size when only thumbnails are needed.
    """
    if info.is_folder:
        yield from _read_folder(info, size)
    else:
        yield from _read_video(info, size)


def _read_folder(info: ClipInfo, size: tuple[int, int] | None) -> Iterator[np.ndarray]:
    for file in frame_files(info.path):
        img = _read_image(file)
        if img.shape[:2] != (info.height, info.width):
            raise DataError(file, f"is {img.shape[1]}x{img.shape[0]} but the first frame of "
                                  f"{info.path} is {info.width}x{info.height}; all frames must share one size")
        yield img if size is None else cv2.resize(img, size, interpolation=cv2.INTER_AREA)


def _read_image(file: Path) -> np.ndarray:
    img = cv2.imread(str(file), cv2.IMREAD_COLOR)
    if img is None:
        raise DataError(file, "cannot be read as an image (corrupt or not PNG/JPEG)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _read_video(info: ClipInfo, size: tuple[int, int] | None) -> Iterator[np.ndarray]:
    n, end = 0, 0.0
    try:
        with av.open(str(info.path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            announced = _announced_duration(container, stream, info)
            for frame in container.decode(stream):
                if (frame.width, frame.height) != (info.width, info.height):
                    raise DataError(info.path, f"frame {n} is {frame.width}x{frame.height}, not "
                                               f"{info.width}x{info.height}; size changes mid-clip are not supported")
                if size is None:
                    img = frame.to_ndarray(format="rgb24")
                else:
                    img = frame.reformat(width=size[0], height=size[1], format="rgb24", interpolation="AREA").to_ndarray()
                n += 1
                if frame.pts is not None:
                    end = max(end, float(frame.pts * frame.time_base) - info.start_time + 1 / float(info.fps))
                yield img
    except av.FFmpegError as exc:
        raise DataError(info.path, f"is truncated or corrupt: decoding failed after {n} frames "
                                   f"({_reason(exc)})") from None
    if info.frame_count and n < info.frame_count:
        raise DataError(info.path, f"is truncated or corrupt: decoded {n} of {info.frame_count} frames")
    # Matroska/WebM cut short decode without complaint; their header still knows the length.
    # The margin is generous because an audio track may legitimately outlast the pictures.
    if announced and end < announced - max(0.5, 0.1 * announced):
        raise DataError(info.path, f"is truncated: its header says {announced:.2f} s but the pictures "
                                   f"stop at {end:.2f} s ({n} frames)")


def _announced_duration(container, stream, info: ClipInfo) -> float | None:
    if stream.duration:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / 1_000_000 - info.start_time
    return None


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc)


@contextlib.contextmanager
def atomic_output(target: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` only on success.

    Videos get ``.<stem>.tmp-<pid><suffix>`` (the suffix tells the muxer the container), folders
    ``.<name>.tmp-<pid>``. On any exception, KeyboardInterrupt included, the temporary is removed
    and ``target`` is left as it was.
    """
    folder = is_folder_output(target)
    check_output_location(target, overwrite)
    name = f".{target.name}.tmp-{os.getpid()}" if folder else f".{target.stem}.tmp-{os.getpid()}{target.suffix}"
    stale = rf"\.{re.escape(target.name)}\.(?:tmp|old)-(\d+)" if folder else \
        rf"\.{re.escape(target.stem)}\.tmp-(\d+){re.escape(target.suffix)}"
    remove_stale_temporaries(target.parent, stale)
    tmp = target.with_name(name)
    try:
        _remove(tmp)
        if folder:
            tmp.mkdir()
        yield tmp
        if folder and target.exists():
            # A directory cannot be renamed over a non-empty one: move the old one aside first.
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
            os.replace(tmp, target)
            _remove(old)
        else:
            os.replace(tmp, target)
    except BaseException as exc:
        _remove(tmp)
        # Input problems are DataError (a ValueError); an OSError here is the output's: no space
        # left, a read-only or pseudo file system (/proc), a folder removed under us.
        if isinstance(exc, OSError):
            raise OutputError(target, f"cannot be written ({_reason(exc)}); nothing was written there") from None
        raise


def check_output_location(target: Path, overwrite: bool) -> None:
    """OutputError unless ``target`` can be created (or replaced, with ``overwrite``)."""
    folder = is_folder_output(target)
    if target.exists():
        if not overwrite and (not folder or any(target.iterdir())):
            raise OutputError(target, "already exists; pass --overwrite to replace it")
        if folder != target.is_dir():
            raise OutputError(target, "exists and is a " + ("file" if folder else "folder"))
    elif not folder and target.suffix.lower() not in VIDEO_ENCODERS:
        raise OutputError(target, f"unsupported output type {target.suffix!r}; use one of "
                                  f"{', '.join(VIDEO_ENCODERS)} or a folder name without suffix")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(target, f"cannot create its folder ({_reason(exc)})") from None
    if not os.access(target.parent, os.W_OK):
        raise OutputError(target, "its folder is not writable")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


class FolderWriter:
    """Writes ``frame_000000.png``, ``frame_000001.png``, ... into an existing folder."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.count = 0

    def write(self, frame: np.ndarray) -> None:
        file = self.folder / f"frame_{self.count:06d}.png"
        if not cv2.imwrite(str(file), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)):
            raise OutputError(file, "could not be written")
        self.count += 1

    def close(self) -> None:
        pass

    def __enter__(self) -> FolderWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class VideoSettings:
    """Encoder choices. ``codec=None`` picks by the output suffix (libx264 for mp4/mkv/mov)."""

    codec: str | None = None
    crf: int = 18  # x264/VP9 quality: lower is better; 18 is close to visually lossless
    preset: str = "medium"  # x264 speed/size trade-off
    tune: str | None = "animation"  # x264 tuning for flat colours and sharp outlines


def choose_video_codec(suffix: str, input_codec: str | None, requested: str | None) -> str:
    """The encoder for this container: ``requested`` if given, else the best one available."""
    if requested:
        try:
            av.codec.Codec(requested, "w")
        except (av.FFmpegError, ValueError):
            raise ValueError(f"no video encoder called {requested!r} in this FFmpeg build") from None
        return requested
    candidates = list(VIDEO_ENCODERS.get(suffix.lower(), ("libx264",)))
    if input_codec and suffix.lower() != ".gif":
        candidates.append(input_codec)
    for name in candidates:
        try:
            av.codec.Codec(name, "w")
        except (av.FFmpegError, ValueError):
            continue
        return name
    raise ValueError(f"no video encoder for {suffix} output in this FFmpeg build (tried {', '.join(candidates)})")


class VideoWriter:
    """Encodes frames at a constant rate (pts = frame number, time base 1/fps) and copies the
    audio of ``audio_from`` alongside, interleaved by time.

    Audio packets are remuxed unchanged when the container takes their codec, otherwise
    re-encoded (AAC, or Opus for WebM). They are shifted by the input video's start time so
    sound stays where it was relative to the pictures.
    """

    def __init__(self, path: Path, fps: Fraction, width: int, height: int, settings: VideoSettings,
                 input_codec: str | None = None, audio_from: Path | None = None, audio_offset: float = 0.0):
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        codec = choose_video_codec(suffix, input_codec, settings.codec)
        self.container = av.open(str(self.path), "w")
        self.fps = Fraction(fps)
        self.count = 0
        self._audio = None
        try:
            self.stream = self._add_video_stream(codec, width, height, settings)
            if audio_from is not None:
                if suffix == ".gif":
                    log.warning("GIF has no sound: the audio of %s is dropped", audio_from)
                else:
                    self._audio = _AudioCopy(audio_from, self.container, suffix, audio_offset)
        except BaseException:
            self.close(flush=False)
            raise
        self.codec = codec
        log.info("encoding %s at %s fps", codec, _fmt_rate(self.fps))

    def _add_video_stream(self, codec: str, width: int, height: int, settings: VideoSettings):
        stream = self.container.add_stream(codec, rate=self.fps)
        # 4:2:0 chroma needs even sizes; pad by repeating the last row/column (see write()).
        self._pad = (0, 0)
        if codec == "gif":
            stream.pix_fmt = "rgb8"
        else:
            stream.pix_fmt = "yuv420p"
            self._pad = (height % 2, width % 2)
            if any(self._pad):
                log.warning("%dx%d is odd; padding one edge row/column for the yuv420p encoder", width, height)
        stream.width, stream.height = width + self._pad[1], height + self._pad[0]
        if stream.pix_fmt == "yuv420p":
            # Convert (in write) and tag as BT.709 limited range, so players decode what we encoded.
            cc = stream.codec_context
            cc.colorspace = cc.color_primaries = cc.color_trc = 1  # BT.709
            cc.color_range = ColorRange.MPEG
        stream.time_base = Fraction(1) / self.fps
        options = {}
        if codec in ("libx264", "libx265"):
            options = {"crf": str(settings.crf), "preset": settings.preset}
            if settings.tune:
                options["tune"] = settings.tune
        elif codec.startswith("libvpx"):
            options = {"crf": str(settings.crf), "b": "0"}
        elif codec != "gif":
            stream.bit_rate = int(0.3 * stream.width * stream.height * float(self.fps))
        stream.options = options
        return stream

    def write(self, frame: np.ndarray) -> None:
        if any(self._pad):
            frame = np.pad(frame, ((0, self._pad[0]), (0, self._pad[1]), (0, 0)), mode="edge")
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        if self.stream.pix_fmt == "yuv420p":
            # Convert with the matrix the stream is tagged with; left to swscale's untagged default,
            # a decode-encode round trip shifts flat colours by about 2/255.
            vf = vf.reformat(format="yuv420p", dst_colorspace=Colorspace.ITU709, dst_color_range=ColorRange.MPEG)
        vf.pts = self.count
        self.count += 1
        for packet in self.stream.encode(vf):
            self.container.mux(packet)
        if self._audio is not None:
            self._audio.mux_until(float(self.count / self.fps))

    def close(self, flush: bool = True) -> None:
        if self.container is None:
            return
        try:
            if flush:
                for packet in self.stream.encode():
                    self.container.mux(packet)
                if self._audio is not None:
                    self._audio.mux_until(float("inf"))
                    self._audio.flush()
        finally:
            if self._audio is not None:
                self._audio.close()
            container, self.container = self.container, None
            try:
                container.close()
            except av.FFmpegError:
                if flush:
                    raise

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(flush=exc_type is None)


class _AudioCopy:
    """The first audio stream of ``source``, remuxed (or re-encoded) into ``container``."""

    def __init__(self, source: Path, container, suffix: str, offset: float):
        self.input = av.open(str(source))
        self.in_stream = self.input.streams.audio[0]
        self.offset = offset
        codec = self.in_stream.codec_context.name
        allowed = AUDIO_COPY_OK.get(suffix, set())
        self.copy = allowed is None or codec in allowed
        if self.copy:
            self.out_stream = container.add_stream_from_template(self.in_stream)
            self._packets = self.input.demux(self.in_stream)
            log.info("copying the %s audio track unchanged", codec)
        else:
            target = AUDIO_FALLBACK.get(suffix, "aac")
            rate = self.in_stream.codec_context.sample_rate
            self.out_stream = container.add_stream(target, rate=48000 if target == "libopus" else rate)
            self.out_stream.layout = self.in_stream.codec_context.layout.name
            self._resampler = av.AudioResampler(format=self.out_stream.codec_context.format.name,
                                                layout=self.out_stream.layout.name,
                                                rate=self.out_stream.codec_context.sample_rate)
            self._packets = self.input.demux(self.in_stream)
            log.warning("%s audio cannot go into %s as it is; re-encoding it as %s", codec, suffix, target)
        self.container = container
        self._pending = None
        self._done = False

    def mux_until(self, seconds: float) -> None:
        """Mux every source packet that starts before ``seconds`` of output time."""
        while not self._done:
            packet = self._pending or next(self._packets, None)
            self._pending = None
            if packet is None:
                self._done = True
                return
            if packet.size == 0 or packet.pts is None:
                continue
            when = float(packet.pts * packet.time_base) - self.offset
            if when > seconds:
                self._pending = packet
                return
            self._mux(packet)

    def _mux(self, packet) -> None:
        if self.copy:
            shift = round(self.offset / packet.time_base)
            packet.pts -= shift
            if packet.dts is not None:
                packet.dts -= shift
            packet.stream = self.out_stream
            self.container.mux(packet)
            return
        for frame in packet.decode():
            frame.pts = None
            for resampled in self._resampler.resample(frame):
                for out in self.out_stream.encode(resampled):
                    self.container.mux(out)

    def flush(self) -> None:
        if not self.copy:
            for resampled in self._resampler.resample(None):
                for out in self.out_stream.encode(resampled):
                    self.container.mux(out)
            for out in self.out_stream.encode(None):
                self.container.mux(out)

    def close(self) -> None:
        self.input.close()


def _fmt_rate(rate: Fraction) -> str:
    return str(rate.numerator) if rate.denominator == 1 else f"{float(rate):.3f}"
