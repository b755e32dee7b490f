"""Scene cuts and held drawings on cartoon-like frames drawn with OpenCV."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from animvfi_pipeline.inference.scenes import FrameAnalyzer, local_change, thumbnail


def cartoon(shift: float, palette: int = 0, h: int = 180, w: int = 320) -> np.ndarray:
    """A flat-coloured shot: sky/ground, a sun, and a character that moves right by ``shift`` px."""
    rng = np.random.default_rng(palette)
    sky, ground, body, sun = (tuple(int(c) for c in rng.integers(0, 256, 3)) for _ in range(4))
    img = np.empty((h, w, 3), np.uint8)
    img[: h * 2 // 3] = sky
    img[h * 2 // 3:] = ground
    cv2.circle(img, (w // 5, h // 5), h // 8, sun, -1, cv2.LINE_AA)
    x = int(round(w // 4 + shift))
    cv2.ellipse(img, (x, h // 2), (w // 10, h // 4), 0, 0, 360, body, -1, cv2.LINE_AA)
    cv2.ellipse(img, (x, h // 2), (w // 10, h // 4), 0, 0, 360, (20, 20, 20), 2, cv2.LINE_AA)
    return img


def grainy_jpeg(img: np.ndarray, rng: np.random.Generator, quality: int = 80) -> np.ndarray:
    """The frame with fresh film grain, JPEG-compressed: a hold is never bit-identical."""
    noisy = np.clip(img + rng.normal(0.0, 3.0, img.shape), 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", noisy, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)


def analyse(frames):
    analyzer = FrameAnalyzer()
    for f in frames:
        analyzer.add(f)
    return analyzer.analysis


def test_cut_between_shots_found_and_fast_motion_is_not_a_cut():
    shot_a = [cartoon(12 * i, palette=1) for i in range(6)]  # fast: 12 px per frame at 320 px
    shot_b = [cartoon(-6 * i, palette=2) for i in range(4)]
    analysis = analyse(shot_a + shot_b)
    assert analysis.n_frames == 10
    assert analysis.cuts() == [6]


def test_cut_to_a_close_up_of_the_same_scene():
    wide = [cartoon(3 * i, palette=4) for i in range(3)]
    close = [cv2.resize(f[45:135, 40:200], (320, 180), interpolation=cv2.INTER_CUBIC) for f in wide]
    assert analyse(wide + close).cuts() == [3]


def test_scene_threshold_of_one_disables_cuts():
    frames = [cartoon(0, palette=1), cartoon(0, palette=2)]
    assert analyse(frames).cuts(scene_threshold=1.0) == []


def test_held_drawings_are_duplicates_even_through_compression():
    rng = np.random.default_rng(0)
    drawings = [cartoon(4 * k, palette=3, h=540, w=960) for k in range(4)]
    frames = [grainy_jpeg(d, rng) for d in drawings for _ in range(2)]  # on twos
    analysis = analyse(frames)
    assert analysis.duplicates() == [1, 3, 5, 7]
    assert analysis.cuts() == []


@pytest.mark.parametrize("h, w", [(540, 960), (1080, 1920)])
def test_a_small_change_is_not_a_hold(h, w):
    rng = np.random.default_rng(1)
    base = cartoon(0, palette=5, h=h, w=w)
    blink = base.copy()
    s = w // 960
    cv2.rectangle(blink, (700 * s, 100 * s), (716 * s, 108 * s), (0, 0, 0), -1)  # an eye closing
    analysis = analyse([grainy_jpeg(base, rng), grainy_jpeg(base, rng), grainy_jpeg(blink, rng)])
    assert analysis.duplicates() == [1]


def test_thumbnail_keeps_aspect_and_range():
    thumb = thumbnail(np.full((1080, 1920, 3), 255, np.uint8))
    assert thumb.shape == (270, 480, 3) and thumb.dtype == np.float32
    assert thumb.max() == pytest.approx(1.0)
    assert local_change(thumb, thumb) == 0.0


def test_a_quiet_cut_between_two_scenes_is_found(tmp_path):
    """Two synthetic shots of different scenes (cel, then paper style) whose pictures differ by
    less than the fixed threshold: the cut stands out of both shots' ordinary transitions."""
    from animvfi_pipeline.data.synthetic_video import Shot, make_clip, write_clip
    from animvfi_pipeline.inference.scenes import DEFAULT_SCENE_THRESHOLD, analyse_clip
    from animvfi_pipeline.inference.video_io import probe

    clip = make_clip([Shot(11, 6, hold=2, style="cel"), Shot(12, 5, hold=3, style="paper")], 128, 72)
    analysis = analyse_clip(probe(write_clip(clip, tmp_path / "quiet_cut.mp4")))
    assert max(analysis.scene_scores) < DEFAULT_SCENE_THRESHOLD  # the old rule alone missed it
    assert analysis.cuts() == clip.cuts == [12]
    assert analysis.duplicates() == [i for i in clip.holds if i not in clip.cuts]


def test_motion_that_speeds_up_within_a_shot_is_not_a_cut():
    slow = [cartoon(2 * i, palette=6) for i in range(8)]
    fast = [cartoon(14 + 10 * i, palette=6) for i in range(1, 8)]  # five times faster, same scene
    assert analyse(slow + fast).cuts() == []


def test_colour_change_sees_a_new_palette_not_motion():
    from animvfi_pipeline.inference.scenes import colour_change, colour_histogram

    def hist(img):
        return colour_histogram(thumbnail(img))

    moved = colour_change(hist(cartoon(0, palette=7)), hist(cartoon(12, palette=7)))
    repainted = colour_change(hist(cartoon(0, palette=7)), hist(cartoon(0, palette=8)))
    assert moved < 0.05 < 0.5 < repainted
