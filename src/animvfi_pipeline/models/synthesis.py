"""Synthesis backbones: from warped frames and motion to a fusion mask, an RGB residual and a
flow correction.

All three backbones share one U-shaped skeleton that works at 1/2 .. 1/16 of the input, with a
sub-pixel head that turns 1/2-resolution features into full-resolution outputs; they differ in
their blocks and bottleneck:

- ``unet``: two plain 3x3 convs per stage;
- ``resunet``: residual blocks in the encoder and the decoder;
- ``transunet``: plain convs plus a transformer bottleneck (patch embedding at the lowest level,
  pre-norm multi-head self-attention with a 2-D sinusoidal position code valid for any size).

Motion-attention gates scale every skip connection by a spatial map computed from the motion cues
the model has at inference time: how much the two warped frames disagree and how far pixels move.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from animvfi_pipeline.models.flownet import conv

BACKBONES = ("unet", "resunet", "transunet")
# img0, img1, warped0, warped1, flow_t0, flow_t1, t, motion cues
CUE_CHANNELS = 3
IN_CHANNELS = 3 * 4 + 4 + 1 + CUE_CHANNELS
# mask logit, RGB residual, residual flows (t->0, t->1)
OUT_CHANNELS = 1 + 3 + 4
FLOW_INPUT_SCALE = 1 / 16  # keeps pixel-sized flows near unit range at the input


def motion_cues(warped0: torch.Tensor, warped1: torch.Tensor, flow_t0: torch.Tensor,
                flow_t1: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W): warping disagreement and log flow magnitudes -- no target involved."""
    disagreement = (warped0 - warped1).abs().mean(dim=1, keepdim=True)
    return torch.cat((disagreement, _log_magnitude(flow_t0), _log_magnitude(flow_t1)), dim=1)


def _log_magnitude(flow: torch.Tensor) -> torch.Tensor:
    # Written out: torch.linalg.norm over the channel dim is ~50x slower on CPU. The epsilon keeps
    # the gradient of sqrt finite at zero flow (an untrained FlowNet outputs exactly zero).
    return torch.log1p((flow[:, :1] ** 2 + flow[:, 1:2] ** 2 + 1e-6).sqrt())


class ConvBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.body = nn.Sequential(conv(cin, cout), conv(cout, cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.body = nn.Sequential(conv(cin, cout), nn.Conv2d(cout, cout, 3, 1, 1))
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)
        self.act = nn.PReLU(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.skip(x) + self.body(x))


class MotionGate(nn.Module):
    """Spatial attention on a skip connection, driven by the motion cues at that level."""

    def __init__(self, feat_ch: int, cue_ch: int = CUE_CHANNELS):
        super().__init__()
        hidden = max(8, feat_ch // 4)
        self.net = nn.Sequential(conv(feat_ch + cue_ch, hidden), nn.Conv2d(hidden, 1, 1))
        # Open by default (sigmoid(2) ~ 0.88): the gate learns where to close, not where to open.
        nn.init.constant_(self.net[1].bias, 2.0)

    def forward(self, skip: torch.Tensor, cues: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        gate = torch.sigmoid(self.net(torch.cat((skip, cues), dim=1)))
        return skip * gate, gate


def sincos_position_2d(h: int, w: int, dim: int, device, dtype) -> torch.Tensor:
    """(h*w, dim) fixed 2-D sinusoidal code: half the channels encode y, half x."""
    quarter = dim // 4
    freqs = torch.exp(torch.arange(quarter, device=device, dtype=torch.float32)
                      * (-math.log(10000.0) / max(quarter, 1)))
    ys = torch.arange(h, device=device, dtype=torch.float32)[:, None] * freqs  # (h, quarter)
    xs = torch.arange(w, device=device, dtype=torch.float32)[:, None] * freqs  # (w, quarter)
    ys = torch.cat((ys.sin(), ys.cos()), dim=1)[:, None, :].expand(h, w, 2 * quarter)
    xs = torch.cat((xs.sin(), xs.cos()), dim=1)[None, :, :].expand(h, w, 2 * quarter)
    pos = torch.cat((ys, xs), dim=-1).reshape(h * w, 4 * quarter)
    return F.pad(pos, (0, dim - 4 * quarter)).to(dtype)


class TransformerLayer(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float = 2.0):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, d // self.heads).unbind(2)
        att = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        x = x + self.proj(att.transpose(1, 2).reshape(b, n, d))
        return x + self.mlp(self.norm2(x))


class TransformerBottleneck(nn.Module):
    """Global context at the lowest level: patchify, self-attend, unpatchify, add back."""

    def __init__(self, ch: int, dim: int = 128, layers: int = 2, heads: int = 4, patch: int = 2):
        super().__init__()
        if dim % heads:
            raise ValueError(f"transformer dim {dim} is not divisible by heads {heads}")
        self.dim = dim
        self.embed = nn.Conv2d(ch, dim, patch, stride=patch)
        self.layers = nn.ModuleList(TransformerLayer(dim, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.unembed = nn.ConvTranspose2d(dim, ch, patch, stride=patch)
        # The block starts as an identity, so it cannot spoil the convolutional path early on.
        nn.init.zeros_(self.unembed.weight)
        nn.init.zeros_(self.unembed.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(x)
        b, d, h, w = tokens.shape
        seq = tokens.flatten(2).transpose(1, 2) + sincos_position_2d(h, w, d, x.device, x.dtype)
        for layer in self.layers:
            seq = layer(seq)
        tokens = self.norm(seq).transpose(1, 2).reshape(b, d, h, w)
        return x + self.unembed(tokens)


class SynthesisNet(nn.Module):
    """U-shaped synthesis network; see the module docstring for the three variants."""

    def __init__(self, name: str = "unet", widths: tuple[int, ...] = (32, 64, 96, 128),
                 head_channels: int = 16, transformer_dim: int = 128, transformer_layers: int = 2,
                 transformer_heads: int = 4, patch_size: int = 2):
        super().__init__()
        if name not in BACKBONES:
            raise ValueError(f"unknown backbone {name!r}; valid names: {', '.join(BACKBONES)}")
        self.name = name
        block = ResBlock if name == "resunet" else ConvBlock
        self.encoder = nn.ModuleList()
        cin = IN_CHANNELS
        for c in widths:  # every stage halves the resolution, the first one down to 1/2
            self.encoder.append(nn.Sequential(conv(cin, c, 3, stride=2), block(c, c)))
            cin = c
        self.bottleneck = (
            TransformerBottleneck(widths[-1], transformer_dim, transformer_layers,
                                  transformer_heads, patch_size)
            if name == "transunet" else nn.Identity()
        )
        self.up = nn.ModuleList()
        self.gates = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for c_low, c in zip(widths[::-1], widths[-2::-1]):
            self.up.append(nn.ConvTranspose2d(c_low, c, 4, stride=2, padding=1))
            self.gates.append(MotionGate(c))
            self.decoder.append(block(2 * c, c))
        # Sub-pixel head: full-resolution outputs computed at 1/2 resolution. Full-resolution
        # convolutions cost ~10x more per FLOP on CPU (memory bound), and the sharp content
        # comes from the full-resolution warped frames anyway.
        self.head = nn.Sequential(conv(widths[0], head_channels * 2),
                                  nn.Conv2d(head_channels * 2, 4 * OUT_CHANNELS, 3, 1, 1),
                                  nn.PixelShuffle(2))
        # Zero output: mask 0.5, no residual, no flow change -- training starts from the blend of
        # the two warped frames rather than from noise.
        nn.init.zeros_(self.head[1].weight)
        nn.init.zeros_(self.head[1].bias)
        self.multiple = 2 ** len(widths) * (patch_size if name == "transunet" else 1)

    def forward(self, img0: torch.Tensor, img1: torch.Tensor, warped0: torch.Tensor,
                warped1: torch.Tensor, flow_t0: torch.Tensor, flow_t1: torch.Tensor,
                t: torch.Tensor) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        """Inputs at full resolution, H and W multiples of ``self.multiple``; t is (B,).

        Returns ``mask`` (B,1,H,W) in (0,1), the weight of warped0 before the t weighting;
        ``residual`` (B,3,H,W); ``flow_delta`` (B,4,H,W) in pixels for (flow_t0, flow_t1);
        ``gates``: the gate maps, finest first.
        """
        b, _, h, w = img0.shape
        cues = motion_cues(warped0, warped1, flow_t0, flow_t1)
        t_map = t.view(b, 1, 1, 1).to(img0.dtype).expand(b, 1, h, w)
        x = torch.cat((img0, img1, warped0, warped1, flow_t0 * FLOW_INPUT_SCALE,
                       flow_t1 * FLOW_INPUT_SCALE, t_map, cues), dim=1)
        skips, cue_pyramid = [], []
        feat, level_cues = x, cues
        for stage in self.encoder:
            feat = stage(feat)
            level_cues = F.avg_pool2d(level_cues, 2)
            skips.append(feat)
            cue_pyramid.append(level_cues)
        cue_pyramid.pop()  # the lowest level has no skip connection
        feat = self.bottleneck(skips.pop())
        gates = []
        for up, gate, dec in zip(self.up, self.gates, self.decoder):
            skip = skips.pop()
            gated, g = gate(skip, cue_pyramid.pop())
            gates.append(g)
            feat = dec(torch.cat((up(feat), gated), dim=1))
        out = self.head(feat)
        return {
            "mask": torch.sigmoid(out[:, :1]),
            "residual": out[:, 1:4],
            "flow_delta": out[:, 4:8],
            "gates": gates[::-1],
        }


class NoSynthesis(nn.Module):
    """``backbone: none``: no synthesis network. Mask 0.5 (the plain t-weighted mean), no residual,
    no flow change -- what a trained SynthesisNet starts from, at no cost. With ``fusion: select``
    the model is then the DIS prior plus a learned choice among its warps, nothing that can paint
    a pixel (docs/training.md, "The selector's recipe")."""

    multiple = 1

    def forward(self, img0: torch.Tensor, img1: torch.Tensor, warped0: torch.Tensor,
                warped1: torch.Tensor, flow_t0: torch.Tensor, flow_t1: torch.Tensor,
                t: torch.Tensor) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        b, _, h, w = img0.shape
        zeros = img0.new_zeros(b, 1, h, w)
        return {"mask": zeros + 0.5, "residual": zeros.expand(b, 3, h, w),
                "flow_delta": zeros.expand(b, 4, h, w), "gates": []}


def build_backbone(name: str, **kwargs) -> SynthesisNet | NoSynthesis:
    """The synthesis backbone called ``name`` (one of BACKBONES, or "none"); kwargs go to SynthesisNet."""
    if name == "none":
        return NoSynthesis()
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; valid names: {', '.join(BACKBONES)}, none")
    return SynthesisNet(name, **kwargs)
