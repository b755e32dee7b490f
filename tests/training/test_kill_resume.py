"""kill -9 a real training process, resume it: it ends with exactly the weights and validation
curve of a run that was never interrupted (the loop's toy task, so it takes seconds)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
EPOCHS = 6
TRAIN = f"""
import sys, time
import torch
sys.path.insert(0, {str(HERE)!r})
from pathlib import Path
from test_loop import ToyData, ToyTask, _cfg
from animvfi_pipeline.training.loop import train

torch.set_num_threads(1)
ckpt_dir, resume, out = Path(sys.argv[1]), sys.argv[2] == "resume", sys.argv[3]

def announce(epoch, row):
    print(f"epoch {{epoch}}", flush=True)
    time.sleep(0.2)  # leaves the killer a window between epochs, as a long epoch would

result = train(ToyTask(), ToyData(20), ToyData(8, offset=100), _cfg(ckpt_dir, epochs={EPOCHS}, resume=resume),
               on_epoch_end=announce)
torch.save({{"model": result.model.state_dict(), "val": result.history["val_mse"].tolist(),
            "epochs": result.history["epoch"].tolist()}}, out)
"""


def run_training(ckpt_dir: Path, out: Path, resume: bool) -> None:
    subprocess.run([sys.executable, "-c", TRAIN, str(ckpt_dir), "resume" if resume else "fresh", str(out)],
                   check=True, timeout=300)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("uninterrupted")
    run_training(tmp / "ckpt", tmp / "result.pt", resume=False)
    return torch.load(tmp / "result.pt", weights_only=True)


def test_killed_training_resumes_to_the_same_weights(tmp_path, uninterrupted):
    ckpt_dir = tmp_path / "ckpt"
    proc = subprocess.Popen([sys.executable, "-c", TRAIN, str(ckpt_dir), "resume", str(tmp_path / "never.pt")],
                            stdout=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if line.strip() == "epoch 2":
                break
        time.sleep(0.3)  # into epoch 3: past the epoch-2 checkpoint, maybe writing the next one
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    killed_at = torch.load(ckpt_dir / "last.pt", weights_only=True)["epoch"]
    assert 2 <= killed_at < EPOCHS  # it really was stopped in mid-training

    run_training(ckpt_dir, tmp_path / "result.pt", resume=True)
    resumed = torch.load(tmp_path / "result.pt", weights_only=True)
    assert resumed["epochs"] == list(range(1, EPOCHS + 1))
    assert resumed["val"] == uninterrupted["val"]
    for name, weight in uninterrupted["model"].items():
        assert torch.equal(resumed["model"][name], weight), name
    assert not list(ckpt_dir.glob("*.tmp-*"))
