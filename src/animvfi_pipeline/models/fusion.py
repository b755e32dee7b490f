"""Learned fusion: per pixel, how much each warped frame counts (``VFIConfig.fusion: select``).

The fixed core warps frame 0 and frame 1 along k estimates of the flow from t each (k = 2 for
``intermediate: both``, 4 for ``all``) and averages the 2k warps with the t weights. Where one estimate lands on
the wrong surface (an occlusion, a motion edge) the mean shows a double edge. ``WarpSelector``
looks only at cues that carry no colour or texture -- how much the warps disagree, whether each
frame's pixels survive the forward-backward round trip, how far things move, t -- and outputs one
logit per warp. Cues without colour are the point: a selector fed the frames learns the training
styles, one fed only the geometry of the warps transfers to a style it never saw
(docs/training.md, "A learned choice among the warps").

The output is a convex combination of the warps, so it cannot invent colours: a static pixel,
where every warp equals the input, comes out as the input whatever the weights. The head starts
at zero, so an untrained selector is exactly the fixed t-weighted mean (``prior_network``).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from animvfi_pipeline.models.flownet import conv, pad_to_multiple
from animvfi_pipeline.models.splat import fb_consistency
from animvfi_pipeline.models.synthesis import _log_magnitude
from animvfi_pipeline.models.warp import warp


def cue_channels(k: int) -> int:
    """Channels of ``selection_cues`` for k estimates per side."""
    return 3 * k + 3


def _diff(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).abs().mean(1, keepdim=True)


def selection_cues(warps0: list[torch.Tensor], warps1: list[torch.Tensor], flow_01: torch.Tensor,
                   flow_10: torch.Tensor, flow_t0: torch.Tensor, flow_t1: torch.Tensor, t: torch.Tensor
                   ) -> torch.Tensor:
    """(B, 3k+3, H, W) colour-free cues at time t for k warps of each frame.

    t; each frame's forward-backward consistency carried to t along its (mean) flow from t; for
    each estimate, how much frame 0's and frame 1's warps disagree; on each side, how much the
    other estimates' warps differ from the first's; log motion magnitudes.
    """
    b, _, h, w = flow_t0.shape
    cues = [t.view(-1, 1, 1, 1).to(flow_t0.dtype).expand(b, 1, h, w),
            warp(fb_consistency(flow_01, flow_10), flow_t0), warp(fb_consistency(flow_10, flow_01), flow_t1)]
    cues += [_diff(a, c) for a, c in zip(warps0, warps1)]
    for side in (warps0, warps1):
        cues += [_diff(side[0], other) for other in side[1:]]
    cues += [_log_magnitude(flow_t0), _log_magnitude(flow_t1)]
    return torch.cat(cues, 1)


class WarpSelector(nn.Module):
    """Small U-Net (1/2 to 1/8 resolution) from the cues to one logit per warp at full size."""

    multiple = 8

    def __init__(self, k: int, width: int = 24, in_channels: int | None = None):
        super().__init__()
        w = width
        self.enc1 = nn.Sequential(conv(in_channels or cue_channels(k), w, 3, 2), conv(w, w))
        self.enc2 = nn.Sequential(conv(w, 2 * w, 3, 2), conv(2 * w, 2 * w))
        self.enc3 = nn.Sequential(conv(2 * w, 3 * w, 3, 2), conv(3 * w, 3 * w))
        self.up3 = nn.ConvTranspose2d(3 * w, 2 * w, 4, 2, 1)
        self.dec2 = nn.Sequential(conv(4 * w, 2 * w), conv(2 * w, 2 * w))
        self.up2 = nn.ConvTranspose2d(2 * w, w, 4, 2, 1)
        self.dec1 = nn.Sequential(conv(2 * w, w), conv(w, w))
        # Sub-pixel head from 1/2 resolution, zero at the start: every warp equally trusted.
        self.head = nn.Sequential(nn.Conv2d(w, 4 * 2 * k, 3, 1, 1), nn.PixelShuffle(2))
        nn.init.zeros_(self.head[0].weight)
        nn.init.zeros_(self.head[0].bias)

    def forward(self, cues: torch.Tensor) -> torch.Tensor:
        x, (h, w) = pad_to_multiple(cues, self.multiple)
        a = self.enc1(x)
        b = self.enc2(a)
        y = self.dec2(torch.cat((self.up3(self.enc3(b)), b), 1))
        y = self.dec1(torch.cat((self.up2(y), a), 1))
        return self.head(y)[..., :h, :w]


def select_fusion(logits: torch.Tensor, warps0: list[torch.Tensor], warps1: list[torch.Tensor],
                  mask: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Convex combination of the 2k warps: softmax over ``logits`` (B, 2k, H, W) on top of the
    fixed weights ``mask (1-t)`` for each of frame 0's warps and ``(1-mask) t`` for frame 1's.

    With zero logits this is ``models.vfi.fuse(mask, mean(warps0), mean(warps1), t)``.
    """
    tt = t.view(-1, 1, 1, 1).to(mask.dtype)
    base0, base1 = mask * (1 - tt), (1 - mask) * tt
    k = len(warps0)
    prior = torch.cat([base0] * k + [base1] * k, 1)
    weights = torch.softmax(logits + torch.log(prior.clamp_min(1e-12)), 1)
    warps = warps0 + warps1
    out = weights[:, :1] * warps[0]
    for i in range(1, 2 * k):
        out = out + weights[:, i:i + 1] * warps[i]
    return out
