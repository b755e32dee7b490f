"""The VFI model behind one tensor, for MLflow's PyTorch flavour and other single-input servers."""
from __future__ import annotations

import torch


class VFIServingModule(torch.nn.Module):
    """Single-tensor wrapper for MLflow: (B, 6, H, W) = frame1 | frame3 in [0, 1] -> middle frame.

    MLflow's PyTorch flavour feeds one array to the model, so the two frames travel stacked on
    the channel axis and t is fixed at 0.5 (ATD-12K's frame2). Arbitrary t: use VFIModel directly.
    """

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.model.inference(frames[:, :3], frames[:, 3:6], 0.5)
