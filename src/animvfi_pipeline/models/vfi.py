"""VFIModel: bidirectional flow -> intermediate flows at t -> backward warps -> fusion.

    img0, img1 --FlowNet--> flow_01, flow_10
        --linear and/or splatted motion at t--> flow_t0, flow_t1 (one pair per estimate)
        --warp, mean over the estimates--> warped0, warped1 --SynthesisNet--> mask, residual, flow_delta
        --re-warp with refined flows, t-weighted fusion (or a learned choice among the warps,
          models.fusion) + residual--> pred
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

from animvfi_pipeline.data.flow import DIS_PRESETS
from animvfi_pipeline.models.flownet import FlowNet, FlowNetConfig, dis_prior, pad_to_multiple, resize_flow
from animvfi_pipeline.models.fusion import WarpSelector, select_fusion, selection_cues
from animvfi_pipeline.models.splat import splatted_flows
from animvfi_pipeline.models.synthesis import build_backbone
from animvfi_pipeline.models.warp import WARP_MODES, mismatch_gate, warp


INTERMEDIATE = ("linear", "splat", "both", "all")
ESTIMATES = {"linear": 1, "splat": 1, "both": 2, "all": 4}  # flows from t per frame, for each choice
FUSION = ("mean", "select")
# The mirrorings (dims flipped) that ``inference`` averages over, for each ``flip_ensemble`` size.
FLIPS = {1: ((),), 2: ((), (3,)), 4: ((), (3,), (2,), (2, 3))}


@dataclass
class VFIConfig:
    backbone: str = "unet"  # unet | resunet | transunet
    flow: FlowNetConfig = field(default_factory=FlowNetConfig)
    freeze_flow: bool = True  # keep the pretrained flow fixed while the synthesis net learns
    widths: tuple[int, ...] = (32, 64, 96, 128)  # synthesis widths at 1/2, 1/4, 1/8, 1/16
    head_channels: int = 16
    refine_flow: bool = True  # apply the synthesis net's residual flow before warping
    transformer_dim: int = 128
    transformer_layers: int = 2
    transformer_heads: int = 4
    patch_size: int = 2
    # > 0: the residual and the flow corrections act only where the two warped frames disagree
    # (models.warp.mismatch_gate), so pixels the classical path already explains -- every static
    # pixel -- come out as the warps give them. 0 = ungated.
    correction_gate: float = 0.0
    # How the flows from time t are estimated: "linear" (Super SloMo, reads the 0 -> 1 flow at the
    # same pixel), "splat" (forward-splats every pixel to where it is at t, models.splat), or
    # "both": each frame is warped along both estimates and the two warps averaged; their errors
    # differ, so the mean beats either (docs/training.md, "The fixed core"). "all": also the two
    # one-sided estimates Super SloMo's linear one interpolates between (``one_sided_flows``),
    # four warps per frame; right where the others cross a motion boundary (docs/training.md).
    intermediate: str = "linear"
    # How the warps are combined: "mean" (the t-weighted mean, weighed by the synthesis net's mask)
    # or "select": a small net that sees only colour-free cues (models.fusion) chooses, per pixel,
    # how much each warp counts. Old checkpoints without the key keep "mean".
    fusion: str = "mean"
    selector_width: int = 24
    # ``inference`` runs the network on the pair as given and mirrored (1: as given only, 2: also
    # left-right, 4: also upside down and both) and averages the frames it predicts. DIS is not
    # mirror-symmetric, so each pass sees a different flow, and their errors partly cancel
    # (docs/training.md, "Mirrored passes"). A static pixel stays the input in every pass. Training
    # and validation use one pass; old checkpoints without the key keep 1.
    flip_ensemble: int = 1
    # DIS variants (data.flow.DIS_PRESETS) the flow prior is chosen among when the model computes
    # it itself (inference): per pair, the one whose flows explain the frames' colours best
    # (data.flow.best_dis_flow_pair). Empty: the flow net's own dis_preset. Priors read from a
    # store (training, validation) are not affected. Time grows with the number of variants.
    flow_candidates: list = field(default_factory=list)
    # How the frames are sampled along the flows (models.warp.warp): "bicubic" keeps the fine
    # texture that bilinear sampling blurs at fractional offsets (+1.7 dB on exact watercolor
    # frames, docs/training.md, "Sharper warps"). Old checkpoints without the key keep "bilinear".
    warp_mode: str = "bilinear"

    def __post_init__(self) -> None:
        if isinstance(self.flow, dict):
            self.flow = FlowNetConfig(**self.flow)
        self.widths = tuple(int(c) for c in self.widths)
        if self.intermediate not in INTERMEDIATE:
            raise ValueError(f"VFIConfig: intermediate must be one of {INTERMEDIATE}, got {self.intermediate!r}")
        if self.fusion not in FUSION:
            raise ValueError(f"VFIConfig: fusion must be one of {FUSION}, got {self.fusion!r}")
        self.flow_candidates = [str(p) for p in self.flow_candidates]
        unknown = [p for p in self.flow_candidates if p not in DIS_PRESETS]
        if unknown:
            raise ValueError(f"VFIConfig: flow_candidates must be among {sorted(DIS_PRESETS)}, got {unknown}")
        if self.warp_mode not in WARP_MODES:
            raise ValueError(f"VFIConfig: warp_mode must be one of {WARP_MODES}, got {self.warp_mode!r}")
        if self.flip_ensemble not in FLIPS:
            raise ValueError(f"VFIConfig: flip_ensemble must be one of {sorted(FLIPS)}, got {self.flip_ensemble!r}")

    def to_dict(self) -> dict:
        """JSON-like (lists, not tuples) so checkpoints load with ``weights_only=True``."""
        def plain(v):
            if isinstance(v, (tuple, list)):
                return [plain(x) for x in v]
            if isinstance(v, dict):
                return {k: plain(x) for k, x in v.items()}
            return v
        return plain(asdict(self))

    @classmethod
    def from_dict(cls, d: dict) -> VFIConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown VFIConfig fields: {', '.join(unknown)}")
        flow = d.get("flow", {})
        if isinstance(flow, dict):
            flow = FlowNetConfig.from_dict(flow)
        return cls(**{**d, "flow": flow})


def intermediate_flows(flow_01: torch.Tensor, flow_10: torch.Tensor, t: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Flows from time t to frames 0 and 1 under linear motion (Super SloMo's approximation).

    ``warp(img0, flow_t0) ~= frame_t`` and ``warp(img1, flow_t1) ~= frame_t``. t is (B,).
    """
    t = t.view(-1, 1, 1, 1)
    flow_t0 = -(1 - t) * t * flow_01 + t * t * flow_10
    flow_t1 = (1 - t) * (1 - t) * flow_01 - t * (1 - t) * flow_10
    return flow_t0, flow_t1


def one_sided_flows(flow_01: torch.Tensor, flow_10: torch.Tensor, t: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Flows from t to frames 0 and 1 (B, 4, H, W) each under two one-sided assumptions: the
    surface at a pixel at t moves as frame 0's pixel there does (``F01``, channels 0-1), or as
    frame 1's does (``-F10``, channels 2-3).

    Super SloMo's linear estimate is their t-weighted mean, so at a motion boundary it mixes the
    object's and the background's motion; one of the two sides is usually right there. t is (B,).
    """
    t = t.view(-1, 1, 1, 1)
    flow_t0 = torch.cat((-t * flow_01, t * flow_10), 1)
    flow_t1 = torch.cat(((1 - t) * flow_01, -(1 - t) * flow_10), 1)
    return flow_t0, flow_t1


def flows_at_t(flow_01: torch.Tensor, flow_10: torch.Tensor, t: torch.Tensor, how: str
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Flows from time t to frames 0 and 1, (B, 2k, H, W) each, k = ``ESTIMATES[how]``: "linear"
    or "splat" (k = 1), "both" (linear in channels 0-1, splatted in 2-3), "all" (those two, then
    the frame-0-sided and the frame-1-sided estimates of ``one_sided_flows``)."""
    if how == "linear":
        return intermediate_flows(flow_01, flow_10, t)
    if how == "splat":
        return splatted_flows(flow_01, flow_10, t)
    lin, spl = intermediate_flows(flow_01, flow_10, t), splatted_flows(flow_01, flow_10, t)
    if how == "both":
        return torch.cat((lin[0], spl[0]), 1), torch.cat((lin[1], spl[1]), 1)
    one = one_sided_flows(flow_01, flow_10, t)
    return torch.cat((lin[0], spl[0], one[0]), 1), torch.cat((lin[1], spl[1], one[1]), 1)


def warps_along(img: torch.Tensor, flows: torch.Tensor, mode: str = "bilinear") -> list[torch.Tensor]:
    """``img`` backward-warped (``mode``: models.warp.warp) along each of the k flows stacked in
    ``flows`` (B, 2k, H, W)."""
    return [warp(img, flows[:, 2 * i:2 * i + 2], mode) for i in range(flows.shape[1] // 2)]


def warp_mean(img: torch.Tensor, flows: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """The mean of ``img`` backward-warped along each flow of ``flows`` (B, 2k, H, W)."""
    return torch.stack(warps_along(img, flows, mode)).mean(0)


def mean_flow(flows: torch.Tensor) -> torch.Tensor:
    """(B, 2, H, W): the mean of the k flows stacked in ``flows`` (B, 2k, H, W)."""
    b, c, h, w = flows.shape
    return flows.view(b, c // 2, 2, h, w).mean(1)


def fuse(mask: torch.Tensor, warped0: torch.Tensor, warped1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Blend the two warped frames: ``mask`` weighs warped0 against warped1, and the frame nearer
    in time counts more, ``(m(1-t) w0 + (1-m) t w1) / (m(1-t) + (1-m) t)``. t is (B,)."""
    tt = t.view(-1, 1, 1, 1).to(mask.dtype)
    w0, w1 = mask * (1 - tt), (1 - mask) * tt
    return (w0 * warped0 + w1 * warped1) / (w0 + w1)


def as_time_tensor(t: float | torch.Tensor, batch: int, like: torch.Tensor) -> torch.Tensor:
    """t as a (B,) tensor on ``like``'s device; accepts a float, a 0-d or a (B,) tensor.

    ``batch`` is ``like``'s batch size; a single pair (batch 1) also accepts several times, and
    the result then has one entry per time.
    """
    t = torch.as_tensor(t, dtype=like.dtype, device=like.device)
    if batch == 1 and t.numel() > 1:
        batch = t.numel()
    if t.dim() == 0:
        t = t.expand(batch)
    t = t.reshape(-1)
    if t.numel() != batch:
        raise ValueError(f"t has {t.numel()} values for a batch of {batch}")
    if bool(((t <= 0) | (t >= 1)).any()):
        raise ValueError(f"t must lie in (0, 1), got {t.tolist()}")
    return t


class VFIModel(nn.Module):
    def __init__(self, cfg: VFIConfig | None = None, flownet: FlowNet | None = None):
        super().__init__()
        self.cfg = cfg or VFIConfig()
        if isinstance(flownet, FlowNet) and flownet.cfg != self.cfg.flow:
            # The checkpoint stores cfg.flow; a different network would not load back.
            raise ValueError(f"flownet config {flownet.cfg} differs from VFIConfig.flow {self.cfg.flow}")
        self.flownet = flownet if flownet is not None else FlowNet(self.cfg.flow)
        self.synthesis = build_backbone(
            self.cfg.backbone, widths=self.cfg.widths, head_channels=self.cfg.head_channels,
            transformer_dim=self.cfg.transformer_dim, transformer_layers=self.cfg.transformer_layers,
            transformer_heads=self.cfg.transformer_heads, patch_size=self.cfg.patch_size,
        )
        k = ESTIMATES[self.cfg.intermediate]
        self.selector = WarpSelector(k, self.cfg.selector_width) if self.cfg.fusion == "select" else None
        if self.cfg.freeze_flow:
            self.flownet.requires_grad_(False)
        self.multiple = max(self.flownet.multiple, self.synthesis.multiple)

    def forward(self, img0: torch.Tensor, img1: torch.Tensor, t: float | torch.Tensor = 0.5,
                prior: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Training entry: every intermediate result, cropped to the input size.

        One t per pair, or one pair (batch 1) and several t: then the flow is computed once and
        the outputs have one entry per t. ``prior``: the flow net's prior for these frames when a
        DataLoader worker computed it (see FlowNet.forward).
        """
        t = as_time_tensor(t, img0.shape[0], img0)
        if prior is None:  # on the frames as given, not the padded ones
            prior = self.flow_prior(img0, img1)
        img0, (h, w) = pad_to_multiple(img0, self.multiple)
        img1, _ = pad_to_multiple(img1, self.multiple)
        if prior is not None:
            prior, _ = pad_to_multiple(prior, self.multiple)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.cfg.freeze_flow):
            flow_01, flow_10 = self.flownet(img0, img1, prior=prior)
        if img0.shape[0] < t.numel():  # one pair at several times: its flow is computed once
            img0, img1, flow_01, flow_10 = (x.expand(t.numel(), -1, -1, -1) for x in (img0, img1, flow_01, flow_10))
        flows_t0, flows_t1 = flows_at_t(flow_01, flow_10, t, self.cfg.intermediate)
        # Each frame along each estimate (the selector weighs them one by one); the synthesis net,
        # the gates and the mean fusion see their mean.
        mode = self.cfg.warp_mode
        warps0, warps1 = warps_along(img0, flows_t0, mode), warps_along(img1, flows_t1, mode)
        warped0, warped1 = torch.stack(warps0).mean(0), torch.stack(warps1).mean(0)
        syn = self.synthesis(img0, img1, warped0, warped1, mean_flow(flows_t0), mean_flow(flows_t1), t)
        gate = mismatch_gate(warped0, warped1, self.cfg.correction_gate) if self.cfg.correction_gate > 0 else 1.0
        if self.cfg.refine_flow:
            k = flows_t0.shape[1] // 2  # one correction, applied to every estimate
            flows_t0 = flows_t0 + gate * syn["flow_delta"][:, :2].repeat(1, k, 1, 1)
            flows_t1 = flows_t1 + gate * syn["flow_delta"][:, 2:].repeat(1, k, 1, 1)
            warps0, warps1 = warps_along(img0, flows_t0, mode), warps_along(img1, flows_t1, mode)
            warped0, warped1 = torch.stack(warps0).mean(0), torch.stack(warps1).mean(0)
        m = syn["mask"]
        out = dict(flow_01=flow_01, flow_10=flow_10, flow_t0=mean_flow(flows_t0),
                   flow_t1=mean_flow(flows_t1), flows_t0=flows_t0, flows_t1=flows_t1,
                   mask=m, warped0=warped0, warped1=warped1)
        if self.selector is not None:
            cues = selection_cues(warps0, warps1, flow_01, flow_10, out["flow_t0"], out["flow_t1"], t)
            out["fusion_logits"] = self.selector(cues)
            base = select_fusion(out["fusion_logits"], warps0, warps1, m, t)
        else:
            base = fuse(m, warped0, warped1, t)
        out["residual"] = gate * syn["residual"]
        out["pred"] = base + out["residual"]
        out = {k: v[..., :h, :w] for k, v in out.items()}
        out["gates"] = syn["gates"]  # at padded resolution; for inspection only
        return out

    def flow_prior(self, img0: torch.Tensor, img1: torch.Tensor) -> torch.Tensor | None:
        """The prior the flow net refines: DIS at its preset, or the best of ``cfg.flow_candidates``."""
        if self.cfg.flow_candidates and self.flownet.cfg.init == "dis":
            return dis_prior(img0, img1, tuple(self.cfg.flow_candidates))
        return self.flownet.prior(img0, img1)

    @torch.no_grad()
    def inference(self, img0: torch.Tensor, img1: torch.Tensor, t: float | torch.Tensor = 0.5,
                  scale: float = 1.0, flips: int | None = None) -> torch.Tensor:
        """The frame at time t, (B,3,H,W) in [0,1], for inputs of any size.

        ``scale < 1`` runs the network on frames shrunk by ``scale`` and applies its motion at
        full resolution: the intermediate flows and the fusion mask are upsampled and the
        full-size frames warped with them, only the (smooth) residual is upsampled as an image.
        Outlines stay sharp while time and memory fall with the square of the scale.
        ``flips``: the mean over this many mirrored passes (1, 2 or 4); default
        ``cfg.flip_ensemble``. Time grows with it.
        """
        n = self.cfg.flip_ensemble if flips is None else int(flips)
        if n not in FLIPS:
            raise ValueError(f"flips must be one of {sorted(FLIPS)}, got {flips!r}")
        total = None
        for dims in FLIPS[n]:
            mirror = (lambda x, d=dims: x.flip(d)) if dims else (lambda x: x)
            pred = mirror(self._predict(mirror(img0), mirror(img1), t, scale))
            total = pred if total is None else total.add_(pred)
        return total / n

    def _predict(self, img0: torch.Tensor, img1: torch.Tensor, t: float | torch.Tensor, scale: float) -> torch.Tensor:
        """One pass of ``inference``."""
        if scale >= 1.0:
            return self.forward(img0, img1, t)["pred"].clamp(0, 1)
        if scale <= 0:
            raise ValueError(f"scale must be in (0, 1], got {scale}")
        t = as_time_tensor(t, img0.shape[0], img0)
        h, w = img0.shape[-2:]
        small = (max(8, round(h * scale)), max(8, round(w * scale)))
        shrink = dict(size=small, mode="bilinear", align_corners=False, antialias=True)
        out = self(F.interpolate(img0, **shrink), F.interpolate(img1, **shrink), t)
        img0, img1 = (x.expand(t.numel(), -1, -1, -1) for x in (img0, img1))  # one pair, several t
        grow = dict(size=(h, w), mode="bilinear", align_corners=False)
        # flows_t*: every estimate (VFIConfig.intermediate = both); a model without them has one.
        flows_t0, flows_t1 = (resize_flow(out.get(f"flows_t{i}", out[f"flow_t{i}"]), (h, w)).to(img0.dtype)
                              for i in (0, 1))
        mask = F.interpolate(out["mask"], **grow)
        mode = self.cfg.warp_mode
        if "fusion_logits" in out:
            pred = select_fusion(F.interpolate(out["fusion_logits"], **grow), warps_along(img0, flows_t0, mode),
                                 warps_along(img1, flows_t1, mode), mask, t)
        else:
            pred = fuse(mask, warp_mean(img0, flows_t0, mode), warp_mean(img1, flows_t1, mode), t)
        residual = out.get("residual")
        if residual is None:  # a forward pass that does not report it (mean fusion): what the fusion left
            residual = out["pred"] - fuse(out["mask"], out["warped0"], out["warped1"], t)
        return (pred + F.interpolate(residual, **grow)).clamp(0, 1)


def prior_network(cfg: VFIConfig) -> VFIModel:
    """The network ``cfg`` describes with its learned parts off: DIS flow (or zero flow), the
    intermediate flows ``cfg.intermediate`` names, backward warps and the fixed t-weighted fusion,
    nothing learned on top.

    Every learned output starts at "no change" (zero-initialised heads), so an untrained model is
    exactly this prior whatever its random weights; it is the baseline a trained model must beat.
    """
    return VFIModel(cfg).eval()

