"""FlowNet: a compact coarse-to-fine network for bidirectional optical flow.

One block per pyramid level (1/16, 1/8, 1/4 of the input by default). Each block sees both
images at its level, each image backward-warped towards the other by the current flows, and the
flows themselves, and predicts a residual for both flows. The finest flow is upsampled to the
input size. Flow convention (docs/architecture.md): ``warp(img1, flow_01) ~= img0``.

With ``init="dis"`` the blocks refine OpenCV DIS flow instead of starting from zero motion: a
classical estimate that is already good on flat-coloured cartoons, which the network only has to
correct where DIS fails (large motion, occlusions, thin lines). On a CPU budget this is what makes
the learned flow useful at all; see docs/model.md.
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from animvfi_pipeline.data.flow import DIS_PRESETS, best_dis_flow_pair
from animvfi_pipeline.models.warp import mismatch_gate, warp


@dataclass
class FlowNetConfig:
    scales: tuple[int, ...] = (16, 8, 4)  # downsampling factor of each level, coarse to fine
    channels: tuple[int, ...] = (128, 96, 64)  # width of each level's block
    depth: int = 4  # 3x3 convs in the residual trunk of each block
    corr_radius: tuple[int, ...] | int = 3  # cost-volume radius per level (window 2r+1); 0 = none
    feat_channels: int = 16  # width of the features the cost volumes compare
    init: str = "zero"  # "zero", or "dis": refine OpenCV DIS flow instead of starting from rest
    dis_preset: str = "fast"  # DIS preset for init="dis" (data.flow.DIS_PRESETS)
    # > 0 with init="dis": the learned residual acts only where the prior's warp does not explain
    # the other frame (models.warp.mismatch_gate), so DIS stands wherever it is photometrically
    # right, e.g. on static texture. 0 = ungated.
    residual_gate: float = 0.0

    def __post_init__(self) -> None:
        self.scales = tuple(int(s) for s in self.scales)
        self.channels = tuple(int(c) for c in self.channels)
        if isinstance(self.corr_radius, int):
            self.corr_radius = (self.corr_radius,) * len(self.scales)
        self.corr_radius = tuple(int(r) for r in self.corr_radius)
        if not self.scales or not len(self.scales) == len(self.channels) == len(self.corr_radius):
            raise ValueError("FlowNetConfig: scales, channels and corr_radius need the same, non-zero length")
        if list(self.scales) != sorted(self.scales, reverse=True) or any(
            s & (s - 1) for s in self.scales
        ):
            raise ValueError(f"FlowNetConfig: scales must be decreasing powers of two, got {self.scales}")
        if self.init not in ("zero", "dis"):
            raise ValueError(f"FlowNetConfig: init must be 'zero' or 'dis', got {self.init!r}")
        if self.dis_preset not in DIS_PRESETS:
            raise ValueError(f"FlowNetConfig: dis_preset must be one of {sorted(DIS_PRESETS)}, got {self.dis_preset!r}")

    def to_dict(self) -> dict:
        """JSON-like (lists, not tuples), for checkpoints and MLflow params."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> FlowNetConfig:
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown FlowNetConfig fields: {', '.join(unknown)}")
        return cls(**d)


def conv(cin: int, cout: int, k: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2), nn.PReLU(cout))


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Replicate-pad the bottom/right so H and W are multiples; return the original (H, W)."""
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return x, (h, w)


def resize_flow(flow: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinearly resize a flow field and rescale its vectors to the new pixel units."""
    h, w = flow.shape[-2:]
    if (h, w) == tuple(size):
        return flow
    out = F.interpolate(flow, size=size, mode="bilinear", align_corners=False)
    scale = torch.tensor([size[1] / w, size[0] / h], device=flow.device, dtype=flow.dtype)
    return out * scale.repeat(flow.shape[1] // 2).view(1, -1, 1, 1)


def local_cost_volume(a: torch.Tensor, b: torch.Tensor, radius: int) -> torch.Tensor:
    """(B, (2r+1)^2, H, W): channel-mean |a(p) - b(p + d)| for every offset d within radius.

    A distance, not a dot product: it is zero at the true match whatever the features are, so
    it carries motion evidence even before the feature layers have learned anything.
    """
    h, w = a.shape[-2:]
    k = 2 * radius + 1
    b = F.pad(b, (radius, radius, radius, radius), mode="replicate")
    return torch.cat(
        [(a - b[..., dy:dy + h, dx:dx + w]).abs().mean(dim=1, keepdim=True) for dy in range(k) for dx in range(k)],
        dim=1,
    )


# The last few DIS results, keyed by the frames' bytes and the presets. Evaluation scores the
# model and its prior (the same DIS, learned parts off) on the same frames one after the other,
# and with several candidates per pair DIS dominates the cost: the second network reuses the
# first one's flows instead of computing them again.
_DIS_CACHE: OrderedDict[tuple, np.ndarray] = OrderedDict()
_DIS_CACHE_SIZE = 4  # four mirrored passes of one pair; a 1080p entry is 33 MB


def _cached_dis_pair(a: np.ndarray, b: np.ndarray, presets: tuple[str, ...]) -> np.ndarray:
    key = (presets, a.shape, hashlib.blake2b(a.tobytes(), digest_size=16).digest(),
           hashlib.blake2b(b.tobytes(), digest_size=16).digest())
    flows = _DIS_CACHE.get(key)
    if flows is None:
        flows = best_dis_flow_pair(a, b, presets)
        _DIS_CACHE[key] = flows
        while len(_DIS_CACHE) > _DIS_CACHE_SIZE:
            _DIS_CACHE.popitem(last=False)
    else:
        _DIS_CACHE.move_to_end(key)
    return flows


def clear_dis_cache() -> None:
    """Forget the cached DIS results (benchmarks that time DIS on one pair over and over)."""
    _DIS_CACHE.clear()


@torch.no_grad()
def dis_prior(img0: torch.Tensor, img1: torch.Tensor, preset: str | tuple[str, ...] = "fast") -> torch.Tensor:
    """(B, 4, H, W) OpenCV DIS flows (flow_01, flow_10) for a batch of images in [0, 1]; with
    several presets, per pair the one whose flows explain the colours best
    (``data.flow.best_dis_flow_pair``).

    DIS runs on the CPU on 8-bit grey frames, so on a GPU this costs a copy and a sync per call;
    training computes it in the DataLoader workers instead (``TripletDataset(prior=...)``). It is
    a constant input to the network, never differentiated.
    """
    def as_u8(x: torch.Tensor) -> np.ndarray:
        return (x.detach().float().clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()

    presets = (preset,) if isinstance(preset, str) else tuple(preset)
    a, b = as_u8(img0), as_u8(img1)
    flows = np.stack([_cached_dis_pair(a[i], b[i], presets) for i in range(len(a))])
    return torch.from_numpy(flows).to(device=img0.device, dtype=img0.dtype)


class FlowBlock(nn.Module):
    """One pyramid level: works at half the level's resolution, returns residual flows at it."""

    def __init__(self, cin: int, c: int, depth: int):
        super().__init__()
        self.down = conv(cin, c, 3, stride=2)
        self.trunk = nn.Sequential(*[conv(c, c) for _ in range(depth)])
        self.up = nn.ConvTranspose2d(c, 4, 4, stride=2, padding=1)
        # Start from "no correction" so an untrained level passes the coarser flow through.
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.down(x)
        return self.up(feat + self.trunk(feat))


class FlowNet(nn.Module):
    def __init__(self, cfg: FlowNetConfig | None = None):
        super().__init__()
        self.cfg = cfg or FlowNetConfig()
        fc = self.cfg.feat_channels
        # Cost volumes hand the blocks motion evidence instead of leaving them to discover
        # matching from raw pixels. In a controlled run (synthetic cartoons, 128x128 crops, 1200
        # steps) the network without them was still at the "predict zero flow" plateau, with
        # them it was 15% below it; the finest level's volume mattered most.
        self.features = nn.Sequential(conv(3, fc), conv(fc, fc)) if any(self.cfg.corr_radius) else None
        self.blocks = nn.ModuleList()
        for c, r in zip(self.cfg.channels, self.cfg.corr_radius):
            # img0, img1, warp(img1, flow_01), warp(img0, flow_10), flow_01, flow_10, 2 cost volumes
            cin = 4 * 3 + 4 + (2 * (2 * r + 1) ** 2 if r > 0 else 0)
            self.blocks.append(FlowBlock(cin, c, self.cfg.depth))
        # The coarsest block halves its level once more.
        self.multiple = 2 * self.cfg.scales[0]

    def prior(self, img0: torch.Tensor, img1: torch.Tensor) -> torch.Tensor | None:
        """The flow the blocks refine, (B, 4, H, W), for unpadded frames; None with init="zero"."""
        return dis_prior(img0, img1, self.cfg.dis_preset) if self.cfg.init == "dis" else None

    def forward(
        self, img0: torch.Tensor, img1: torch.Tensor, return_pyramid: bool = False,
        prior: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor] | tuple[torch.Tensor, torch.Tensor, list]:
        """Bidirectional flow at input resolution, in input pixels.

        Returns ``(flow_01, flow_10)``, or with ``return_pyramid=True``
        ``(flow_01, flow_10, [(flow_01, flow_10) per level, coarse to fine])`` where every level's
        flow is resized to the input resolution (for a multi-scale loss against full-size targets).
        ``prior``: :meth:`prior` of these frames computed elsewhere (in a DataLoader worker);
        by default it is computed here.
        """
        # The blocks learn a residual over a prior: zero motion, or DIS flow (init="dis"). The
        # prior is kept at full resolution so its detail survives the 1/4-scale network.
        if self.cfg.init == "zero" and prior is not None:
            raise ValueError("a flow prior was given to a FlowNet with init='zero'")
        if prior is None:
            prior = self.prior(img0, img1)
        img0, (h, w) = pad_to_multiple(img0, self.multiple)
        img1, _ = pad_to_multiple(img1, self.multiple)
        if prior is not None:
            prior, _ = pad_to_multiple(prior, self.multiple)
        both = torch.cat((img0, img1), dim=1)
        residual = None
        levels = []
        for scale, r, block in zip(self.cfg.scales, self.cfg.corr_radius, self.blocks):
            # avg-pooling is the anti-aliased downsampling for integer factors.
            ims = F.avg_pool2d(both, scale) if scale > 1 else both
            i0, i1 = ims[:, :3], ims[:, 3:]
            size = ims.shape[-2:]
            if residual is None:
                residual = ims.new_zeros(ims.shape[0], 4, *size)
            else:
                residual = resize_flow(residual, size)
            flow = residual if prior is None else resize_flow(prior, size) + residual
            x = [i0, i1, warp(i1, flow[:, :2]), warp(i0, flow[:, 2:]), flow]
            if r > 0:
                feat0, feat1 = self.features(torch.cat((i0, i1))).chunk(2)  # one pass for both
                x += [local_cost_volume(feat0, warp(feat1, flow[:, :2]), r),
                      local_cost_volume(feat1, warp(feat0, flow[:, 2:]), r)]
            residual = residual + block(torch.cat(x, dim=1))
            levels.append(residual)

        if prior is not None and self.cfg.residual_gate > 0:
            g = self.cfg.residual_gate
            gate = torch.cat([mismatch_gate(img0, warp(img1, prior[:, :2]), g)] * 2
                             + [mismatch_gate(img1, warp(img0, prior[:, 2:]), g)] * 2, dim=1)
        else:
            gate = 1.0

        def at_input_size(res: torch.Tensor) -> torch.Tensor:
            full = resize_flow(res, img0.shape[-2:])
            return (full if prior is None else prior + gate * full)[..., :h, :w]

        out = at_input_size(residual)
        if not return_pyramid:
            return out[:, :2], out[:, 2:]
        pyramid = [(f[:, :2], f[:, 2:]) for f in map(at_input_size, levels[:-1])]
        pyramid.append((out[:, :2], out[:, 2:]))
        return out[:, :2], out[:, 2:], pyramid
