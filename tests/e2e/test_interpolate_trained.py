"""`animvfi interpolate` with the model a `kedro run` trained, as an animator runs it.

The clip is rendered by the project's synthetic generator, so the true in-between frames at
every t are known. The model is the project's own ``data/06_models/vfi.pt``, found without
``--model`` (the tiny `kedro run` of the ``finished_project`` fixture trained it).
"""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from animvfi_pipeline.data.synthetic_builder import make_scene

from project_copy import BIN, run

W, H, N_WINDOWS = 128, 80, 4
SEEDS = (11, 12, 13)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * math.log10(255.0**2 / max(mse, 1e-10))


def write_frames(folder: Path, frames: list[np.ndarray]) -> Path:
    folder.mkdir(parents=True)
    for i, f in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:04d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    return folder


def read_frames(folder: Path) -> list[np.ndarray]:
    return [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in sorted(folder.glob("*.png"))]


@pytest.mark.parametrize("factor", [2, 4])
def test_trained_model_beats_blending_on_a_synthetic_clip(finished_project, tmp_path, factor):
    ours, blended = [], []
    for seed in SEEDS:
        scene = make_scene(seed, W, H, level=1, n_windows=N_WINDOWS)
        # Frame k is window k at its start; the last one ends the last window.
        source = [scene.window(k).render(0.0) for k in range(N_WINDOWS)] + [scene.window(N_WINDOWS - 1).render(1.0)]
        src = write_frames(tmp_path / f"clip{seed}", source)
        out = tmp_path / f"smooth{seed}"
        proc = run([str(BIN / "animvfi"), "interpolate", str(src), "-o", str(out), "--factor", str(factor)],
                   cwd=finished_project)
        assert "vfi.pt" in proc.stderr  # it says which model it uses
        frames = read_frames(out)
        assert len(frames) == len(source) * factor and frames[0].shape == (H, W, 3)
        for j in range(1, N_WINDOWS * factor):
            k, step = divmod(j, factor)
            if step == 0:
                assert np.array_equal(frames[j], source[k])  # source frames pass through untouched
                continue
            truth = scene.window(k).render(step / factor)
            ours.append(psnr(frames[j], truth))
            blended.append(psnr(((source[k].astype(float) + source[k + 1]) / 2).round(), truth))
    gain = np.mean(ours) - np.mean(blended)
    print(f"factor {factor}: model {np.mean(ours):.2f} dB, blending {np.mean(blended):.2f} dB")
    assert gain > 2.0, f"{np.mean(ours):.2f} dB vs blending {np.mean(blended):.2f} dB"
