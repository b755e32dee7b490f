"""No space left: writing the store, a checkpoint, a report file or a video onto a nearly full
disk (a real, small tmpfs) ends with an error naming the file, keeps the previous version intact
and leaves no partial or temporary file. Unwritable output locations get one line, not a traceback."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from fixtures_atd12k import make_atd12k_tree
from kedro.io import DatasetError

from animvfi_pipeline.console import main
from animvfi_pipeline.data.atd12k import scan_atd12k
from animvfi_pipeline.data.h5store import IngestionConfig, TripletStore, write_triplets_h5
from animvfi_pipeline.datasets.atomic import CSVDataset, JSONDataset
from animvfi_pipeline.models.checkpoint import load_checkpoint, save_checkpoint

NO_SPACE = "No space left on device"


@pytest.fixture
def small_disk(tmp_path):
    """A 256 KiB file system of its own (tmpfs; needs root, as in this project's CI container)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def only(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_store_write_on_a_full_disk(small_disk, tmp_path):
    root = tmp_path / "atd"
    make_atd12k_tree(root, n_train_clips=3, n_test=2, triplets_per_clip=2)
    path = small_disk / "triplets.h5"
    write_triplets_h5(path, scan_atd12k(root), IngestionConfig(size=(40, 24), workers=0), progress=False)
    before = path.read_bytes()

    with pytest.raises(OSError, match=NO_SPACE) as err:  # 5x the pixels: no longer fits
        write_triplets_h5(path, scan_atd12k(root), IngestionConfig(size=(200, 120), workers=0), progress=False)
    assert str(err.value).startswith(f"[Errno 28] {path}: could not be written")
    assert path.read_bytes() == before and len(TripletStore(path)) > 0
    assert only(small_disk) == ["triplets.h5"]


def test_checkpoint_write_on_a_full_disk(small_disk):
    path = small_disk / "vfi.pt"
    save_checkpoint(path, {"kind": "animvfi.vfi", "format_version": 1, "model_config": {}, "model": {"w": torch.ones(1000)}})
    with pytest.raises(OSError, match=f"{path}: could not be written .*{NO_SPACE}.*previous version is left"):
        save_checkpoint(path, {"kind": "animvfi.vfi", "format_version": 1, "model_config": {},
                               "model": {"w": torch.ones(100_000)}})
    assert torch.equal(load_checkpoint(path, "animvfi.vfi")["model"]["w"], torch.ones(1000))
    assert only(small_disk) == ["vfi.pt"]


def test_report_files_on_a_full_disk(small_disk):
    metrics = JSONDataset(filepath=str(small_disk / "metrics.json"))
    metrics.save({"model": {"psnr": 30.0}})
    table = CSVDataset(filepath=str(small_disk / "per_triplet.csv"), save_args={"index": False})
    import pandas as pd

    table.save(pd.DataFrame({"psnr": [30.0]}))
    with pytest.raises(DatasetError, match=NO_SPACE):
        metrics.save({"model": {f"psnr_{i}": float(i) for i in range(30_000)}})
    with pytest.raises(DatasetError, match=NO_SPACE):
        table.save(pd.DataFrame({"psnr": np.arange(100_000, dtype=float)}))
    assert json.loads((small_disk / "metrics.json").read_text()) == {"model": {"psnr": 30.0}}
    assert table.load()["psnr"].tolist() == [30.0]
    assert only(small_disk) == ["metrics.json", "per_triplet.csv"]


def test_video_on_a_full_disk_is_one_line_and_keeps_the_previous_output(small_disk, tmp_path, capsys):
    frames = tmp_path / "frames"
    frames.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):  # noise does not compress: the video cannot fit in 256 KiB
        cv2.imwrite(str(frames / f"{i:04d}.png"), rng.integers(0, 256, (144, 256, 3), dtype=np.uint8))
    output = small_disk / "smooth.mp4"
    output.write_bytes(b"the previous render")

    code = main(["interpolate", str(frames), "-o", str(output), "--model", "classical", "--crf", "0",
                 "--overwrite", "-q"])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert len(err.splitlines()) == 1 and err.startswith(f"animvfi: error: {output}")
    assert output.read_bytes() == b"the previous render"
    assert only(small_disk) == ["smooth.mp4"]


@pytest.mark.parametrize("output", ["/proc/x", "/proc/x.mp4"])
def test_output_that_cannot_be_created_is_one_line(tmp_path, output, capsys):
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(2):
        cv2.imwrite(str(frames / f"{i:04d}.png"), np.full((16, 16, 3), 40 * i, np.uint8))
    code = main(["interpolate", str(frames), "-o", output, "--model", "classical", "-q"])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert len(err.splitlines()) == 1 and err.startswith(f"animvfi: error: {output}: cannot be written")
