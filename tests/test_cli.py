"""`animvfi interpolate` end to end, as a user runs it.

The timing and scene-handling checks here use ``--model classical`` (the DIS optical-flow
baseline, a documented option), which needs no training. The network path (checkpoint loading,
batching, flow scale, tiles) runs with a small untrained checkpoint; the project's trained model
is checked against the true in-betweens in tests/e2e/test_interpolate_trained.py.
"""
from __future__ import annotations

import math
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from animvfi_pipeline.console import main
from animvfi_pipeline.inference.video_io import probe, read_frames

H, W = 64, 96


# --- test clips: cartoon shapes moving at constant speed, so any in-between is known -----------


def picture(time: float, shot: int = 0, s: int = 4) -> np.ndarray:
    """The frame at ``time`` (in frames) of shot 0 or 1, anti-aliased by ``s`` x supersampling."""
    img = np.empty((H * s, W * s, 3), np.uint8)
    ramp = np.linspace(0, 1, H * s)[:, None]
    top, bottom = ((90, 160, 230), (230, 240, 200)) if shot == 0 else ((120, 40, 60), (40, 20, 30))
    img[:] = (np.array(top) * (1 - ramp) + np.array(bottom) * ramp)[:, None, :].astype(np.uint8)
    x, y = (20 + 3.0 * time) * s, (30 + 1.0 * time) * s
    if shot == 0:
        cv2.circle(img, (int(x), int(y)), 12 * s, (240, 120, 40), -1)
        cv2.circle(img, (int(x), int(y)), 12 * s, (20, 20, 20), 2 * s)
        rx = (70 - 2.0 * time) * s
        cv2.rectangle(img, (int(rx), 8 * s), (int(rx + 14 * s), 24 * s), (60, 200, 90), -1)
        cv2.rectangle(img, (int(rx), 8 * s), (int(rx + 14 * s), 24 * s), (20, 20, 20), 2 * s)
    else:
        cv2.ellipse(img, (int(W * s - x), int(y)), (16 * s, 9 * s), 30, 0, 360, (250, 230, 90), -1)
    return cv2.resize(img, (W, H), interpolation=cv2.INTER_AREA)


def write_clip(path: Path, frames: list[np.ndarray], fps: Fraction, audio: str | None = None) -> Path:
    """Encode ``frames`` (near-losslessly) with PyAV; ``audio``: codec of a 440 Hz sine track."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = W, H, "yuv420p"
        video.options = {"crf": "4"}
        sound = None
        if audio:
            sound = out.add_stream(audio, rate=44100)
            sound.layout = "mono"
        for i, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(f, format="rgb24")
            vf.pts = i
            out.mux(video.encode(vf))
        out.mux(video.encode())
        if sound is not None:
            total = int(44100 * len(frames) / fps)
            wave = (0.3 * np.sin(2 * np.pi * 440 * np.arange(total) / 44100)).astype(np.float32)
            for start in range(0, total, 1024):
                af = av.AudioFrame.from_ndarray(wave[None, start:start + 1024], format="fltp", layout="mono")
                af.sample_rate, af.pts = 44100, start
                out.mux(sound.encode(af))
            out.mux(sound.encode())
    return path


def write_frames(folder: Path, frames: list[np.ndarray]) -> Path:
    folder.mkdir()
    for i, f in enumerate(frames):
        cv2.imwrite(str(folder / f"frame{i}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    return folder


def decode(path: Path):
    """(frames, presentation times in seconds, stream average rate) of a video file."""
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        frames, times = [], []
        for f in c.decode(stream):
            frames.append(f.to_ndarray(format="rgb24"))
            times.append(float(f.pts * f.time_base))
        return frames, times, stream.average_rate


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * math.log10(255.0**2 / max(mse, 1e-10))


def run(capsys, *args) -> tuple[int, str]:
    code = main(["interpolate", *map(str, args)])
    return code, capsys.readouterr().err


# --- a small untrained network checkpoint --------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    import torch

    from animvfi_pipeline.models.checkpoint import make_checkpoint, save_checkpoint
    from animvfi_pipeline.models.flownet import FlowNetConfig
    from animvfi_pipeline.models.vfi import VFIConfig, VFIModel

    torch.manual_seed(0)
    cfg = VFIConfig(flow=FlowNetConfig(scales=(8, 4), channels=(16, 16), depth=1), widths=(8, 8, 16, 16),
                    head_channels=4)
    path = tmp_path_factory.mktemp("model") / "vfi.pt"
    save_checkpoint(path, make_checkpoint("animvfi.vfi", VFIModel(cfg), cfg.to_dict()))
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """Eight frames at 12 fps of the moving shapes."""
    folder = tmp_path_factory.mktemp("clip")
    return write_clip(folder / "shapes.mp4", [picture(i) for i in range(8)], Fraction(12))


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory) -> Path:
    """Three frames at 12 fps: enough for the (slower) network path."""
    folder = tmp_path_factory.mktemp("short")
    return write_clip(folder / "short.mp4", [picture(i) for i in range(3)], Fraction(12))


# --- what users ask for ---------------------------------------------------------------------------


@pytest.mark.parametrize("factor", [2, 4])
def test_factor_gives_the_right_frames_at_the_right_times_and_beats_blending(capsys, tmp_path, clip, factor):
    out = tmp_path / "smooth.mp4"
    code, err = run(capsys, clip, "-o", out, "--factor", factor, "--model", "classical", "--crf", "8")
    assert code == 0, err
    frames, times, rate = decode(out)
    assert len(frames) == 8 * factor and frames[0].shape == (H, W, 3)
    assert rate == 12 * factor
    assert times == pytest.approx([j / (12 * factor) for j in range(8 * factor)], abs=1e-3)
    source, _, _ = decode(clip)
    ours, blended = [], []
    for j in range(1, 7 * factor):
        if j % factor:
            i, t = divmod(j, factor)
            truth = picture(i + t / factor)
            ours.append(psnr(frames[j], truth))
            blended.append(psnr(((source[i].astype(float) + source[i + 1]) / 2).round(), truth))
    assert np.mean(ours) > np.mean(blended) + 2.0  # dB


def test_retime_24_to_60_fps(capsys, tmp_path):
    src = write_clip(tmp_path / "in.mkv", [picture(i * 1.5) for i in range(24)], Fraction(24))
    out = tmp_path / "out.mp4"
    code, err = run(capsys, src, "-o", out, "--fps", "60", "--model", "classical", "-q")
    assert code == 0, err
    frames, times, rate = decode(out)
    assert rate == 60 and len(frames) == 60  # one second in, one second out
    assert times == pytest.approx([j / 60 for j in range(60)], abs=1e-3)
    # Output frame 3 shows source time 3/60 s = source frame 1.2, not a repeat of frame 1.
    assert psnr(frames[3], picture(1.2 * 1.5)) > psnr(frames[3], picture(1.0 * 1.5)) + 1.0


def test_retime_30_to_24_fps(capsys, tmp_path):
    src = write_clip(tmp_path / "in.mp4", [picture(i * 0.5) for i in range(30)], Fraction(30))
    out = tmp_path / "out.mp4"
    assert run(capsys, src, "-o", out, "--fps", "24", "--model", "classical", "-q")[0] == 0
    frames, times, rate = decode(out)
    assert rate == 24 and len(frames) == 24
    assert times[-1] == pytest.approx(23 / 24, abs=1e-3)


def test_scene_cut_is_held_not_interpolated(capsys, tmp_path):
    src = write_clip(tmp_path / "cut.mp4", [picture(i) for i in range(4)] + [picture(i, shot=1) for i in range(4)],
                     Fraction(12))
    out = tmp_path / "frames"  # no suffix: a folder of PNG frames
    code, err = run(capsys, src, "-o", out, "--factor", 4, "--model", "classical")
    assert code == 0, err
    assert "scene cut" in err
    frames = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in sorted(out.glob("frame_*.png"))]
    assert len(frames) == 32
    source = list(read_frames(probe(src)))
    # Between source frames 3 and 4 (output 13, 14, 15): copies, never a mix of the two shots.
    assert np.array_equal(frames[13], source[3])
    assert np.array_equal(frames[14], source[4]) and np.array_equal(frames[15], source[4])


def test_dedup_makes_anime_on_twos_move_evenly(capsys, tmp_path):
    drawings = [picture(2 * k) for k in range(6)]
    src = write_frames(tmp_path / "twos", [d for d in drawings for _ in range(2)])

    def centre_x(img):  # the orange circle's centroid
        mask = (img[..., 0] > 200) & (img[..., 1] > 90) & (img[..., 1] < 150) & (img[..., 2] < 80)
        return np.nonzero(mask)[1].mean()

    steps = {}
    for name, extra in (("plain", []), ("dedup", ["--dedup"])):
        out = tmp_path / name
        code, err = run(capsys, src, "-o", out, "--factor", 2, "--model", "classical", *extra)
        assert code == 0, err
        frames = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in sorted(out.glob("*.png"))]
        assert len(frames) == 24
        steps[name] = np.diff([centre_x(f) for f in frames[:20]])
    assert "repeat the previous drawing" in err
    assert (np.abs(steps["plain"]) < 0.3).sum() >= 8  # stalls on every held frame
    assert np.all(np.abs(steps["dedup"] - 1.5) < 0.5)  # 6 px per drawing = 1.5 px every output frame


def test_audio_is_carried_over_unchanged(capsys, tmp_path, clip):
    src = write_clip(tmp_path / "talk.mp4", [picture(i) for i in range(12)], Fraction(12), audio="aac")
    out = tmp_path / "smooth.mov"
    code, err = run(capsys, src, "-o", out, "--model", "classical", "-q")
    assert code == 0, err

    def audio_packets(path):
        with av.open(str(path)) as c:
            stream = c.streams.audio[0]
            return stream.codec_context.name, [bytes(p) for p in c.demux(stream) if p.size]

    codec, packets = audio_packets(out)
    assert codec == "aac" and packets == audio_packets(src)[1]
    with av.open(str(out)) as c:
        assert c.duration / 1e6 == pytest.approx(1.0, abs=0.1)


def test_audio_the_container_cannot_hold_is_reencoded(capsys, tmp_path):
    src = write_clip(tmp_path / "talk.mkv", [picture(i) for i in range(12)], Fraction(12), audio="aac")
    out = tmp_path / "smooth.webm"
    code, err = run(capsys, src, "-o", out, "--model", "classical")
    assert code == 0, err
    with av.open(str(out)) as c:
        assert c.streams.audio[0].codec_context.name == "opus"
        assert c.streams.video[0].codec_context.name == "vp9"


# --- the network path ----------------------------------------------------------------------------


def test_default_model_is_the_projects_and_says_so(capsys, tmp_path, monkeypatch, short_clip, tiny_checkpoint):
    (tmp_path / "data" / "06_models").mkdir(parents=True)
    (tmp_path / "data" / "06_models" / "vfi.pt").write_bytes(tiny_checkpoint.read_bytes())
    monkeypatch.chdir(tmp_path)
    code, err = run(capsys, short_clip, "-o", "out.mp4", "--factor", 3, "--batch-size", 2)
    assert code == 0, err
    assert "using the project's model" in err and "vfi.pt" in err
    frames, times, rate = decode(tmp_path / "out.mp4")
    assert len(frames) == 9 and rate == 36
    assert times == pytest.approx([j / 36 for j in range(9)], abs=1e-3)


def test_memory_options_keep_size_and_count(capsys, tmp_path, short_clip, tiny_checkpoint):
    out = tmp_path / "out"
    code, err = run(capsys, short_clip, "-o", out, "--model", tiny_checkpoint, "--flow-scale", 0.5,
                    "--tile", 64, "--flips", 2, "--flow-candidates", "fine,fine-pca", "--warp", "bicubic", "--device", "cpu", "-q")
    assert code == 0, err
    frames = sorted(out.glob("*.png"))
    assert len(frames) == 6 and cv2.imread(str(frames[1])).shape == (H, W, 3)


def test_an_unknown_flow_candidate_is_refused_by_name(capsys, tmp_path, short_clip, tiny_checkpoint):
    with pytest.raises(SystemExit) as exited:  # argparse: usage line and the reason, exit status 2
        run(capsys, short_clip, "-o", tmp_path / "out.mp4", "--model", tiny_checkpoint, "--flow-candidates", "fine,finest")
    err = capsys.readouterr().err
    assert exited.value.code == 2 and "finest" in err and "fine-pca" in err
    assert not (tmp_path / "out.mp4").exists()


def test_without_any_model_it_explains_how_to_get_one(capsys, tmp_path, monkeypatch, clip):
    monkeypatch.chdir(tmp_path)
    code, err = run(capsys, clip, "-o", "out.mp4")
    assert code != 0
    assert "make run" in err and "kedro run" in err and "vfi.pt" in err
    assert not (tmp_path / "out.mp4").exists()


# --- bad input: one line naming the file, non-zero exit, nothing written -------------------------


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    missing = tmp_path / "missing.mp4"
    text = tmp_path / "notes.mp4"
    text.write_text("not a video " * 50)
    full = write_clip(tmp_path / "full.mkv", [picture(i) for i in range(24)], Fraction(12)).read_bytes()
    truncated = tmp_path / "cut_short.mkv"
    truncated.write_bytes(full[: len(full) // 2])
    single = write_clip(tmp_path / "single.mp4", [picture(0)], Fraction(12))
    mixed = write_frames(tmp_path / "mixed", [picture(0), picture(1)])
    cv2.imwrite(str(mixed / "frame2.png"), np.zeros((H + 2, W, 3), np.uint8))
    return {
        "missing": (missing, "missing.mp4: does not exist"),
        "not a video": (text, "notes.mp4: cannot be read as a video"),
        "truncated": (truncated, "cut_short.mkv: is truncated"),
        "one frame": (single, "single.mp4: has 1 frame"),
        "mixed sizes": (mixed, "frame2.png: is 96x66"),
    }


@pytest.mark.parametrize("case", ["missing", "not a video", "truncated", "one frame", "mixed sizes"])
def test_bad_input_is_one_clear_line(capsys, tmp_path, case):
    src, message = _bad_inputs(tmp_path)[case]
    out = tmp_path / "out.mp4"
    code, err = run(capsys, src, "-o", out, "--model", "classical", "-q")
    assert code == 1
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_unwritable_output_location(capsys, tmp_path, clip):
    blocker = tmp_path / "report.txt"
    blocker.write_text("a file, not a folder")
    code, err = run(capsys, clip, "-o", blocker / "out.mp4", "--model", "classical", "-q")
    assert code == 1 and "report.txt/out.mp4: cannot create its folder" in err


def test_codec_the_container_cannot_hold(capsys, tmp_path, clip):
    out = tmp_path / "out.gif"
    code, err = run(capsys, clip, "-o", out, "--model", "classical", "--codec", "libx264", "-q")
    assert code == 1 and "out.gif: cannot be encoded" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_existing_output_needs_overwrite(capsys, tmp_path, clip):
    out = tmp_path / "out.mp4"
    out.write_bytes(b"precious")
    code, err = run(capsys, clip, "-o", out, "--model", "classical", "-q")
    assert code == 1 and "--overwrite" in err and out.read_bytes() == b"precious"
    assert run(capsys, clip, "-o", out, "--model", "classical", "-q", "--overwrite")[0] == 0
    assert len(decode(out)[0]) == 16


@pytest.mark.parametrize("content", [b"PK\x03\x04 not a checkpoint", None])
def test_checkpoint_that_is_not_ours(capsys, tmp_path, clip, content):
    import torch

    bad = tmp_path / "other.pt"
    if content is None:
        torch.save({"state_dict": {"w": torch.zeros(2)}}, bad)  # someone else's checkpoint
    else:
        bad.write_bytes(content)
    code, err = run(capsys, clip, "-o", tmp_path / "out.mp4", "--model", bad, "-q")
    assert code == 1 and "other.pt: " in err and "Traceback" not in err
    assert not (tmp_path / "out.mp4").exists()


@pytest.mark.parametrize("interruption", [KeyboardInterrupt, RuntimeError])
def test_interrupted_run_leaves_nothing_under_the_output_name(capsys, tmp_path, monkeypatch, clip, interruption):
    from animvfi_pipeline.inference import interpolate

    calls = []

    def failing(img0, img1, ts):
        calls.append(1)
        if len(calls) == 3:
            raise interruption("stop")
        return [img0 for _ in ts]

    monkeypatch.setattr(interpolate, "classical_interpolator", lambda: failing)
    for out in (tmp_path / "out.mp4", tmp_path / "frames"):
        calls.clear()
        if interruption is KeyboardInterrupt:
            code, err = run(capsys, clip, "-o", out, "--model", "classical", "-q")
            assert code == 130 and "nothing was written" in err
        else:
            with pytest.raises(RuntimeError):
                main(["interpolate", str(clip), "-o", str(out), "--model", "classical", "-q"])
        assert not out.exists()
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_console_script_is_installed():
    exe = Path(sys.executable).with_name("animvfi")
    done = subprocess.run([str(exe), "interpolate", "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "--factor" in done.stdout and "--dedup" in done.stdout
