"""Losses for flow pretraining and VFI training.

Images are (B,3,H,W) in [0,1]; flows (B,2,H,W) in pixels, ``warp(img1, flow_01) ~= img0``.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from animvfi_pipeline.errors import CheckpointError
from animvfi_pipeline.models.warp import warp

logger = logging.getLogger(__name__)

VGG19_HUB_FILE = "vgg19-dcbb9e9d.pth"
VFI_LOSS_TERMS = ("charbonnier", "census", "ssim", "perceptual")


def _masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return x.mean()
    mask = mask.expand_as(x)
    return (x * mask).sum() / mask.sum().clamp_min(1.0)


def charbonnier(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-3,
                mask: torch.Tensor | None = None) -> torch.Tensor:
    """Robust L1: mean of sqrt((pred - target)^2 + eps^2)."""
    return _masked_mean(torch.sqrt((pred - target) ** 2 + eps * eps), mask)


def _gray(img: torch.Tensor) -> torch.Tensor:
    w = torch.tensor([0.299, 0.587, 0.114], device=img.device, dtype=img.dtype).view(1, 3, 1, 1)
    return (img * w).sum(dim=1, keepdim=True)


def _census_transform(gray: torch.Tensor, patch: int) -> torch.Tensor:
    # Each output channel is one neighbour minus the centre, squashed to (-1, 1): a soft,
    # differentiable ternary code that ignores brightness offsets (flat cartoon colours).
    eye = torch.eye(patch * patch, device=gray.device, dtype=gray.dtype)
    neighbours = F.conv2d(gray, eye.view(patch * patch, 1, patch, patch), padding=patch // 2)
    diff = neighbours - gray
    return diff / torch.sqrt(0.81 + diff * diff)


def census_loss(pred: torch.Tensor, target: torch.Tensor, patch: int = 7,
                mask: torch.Tensor | None = None) -> torch.Tensor:
    """Soft ternary census distance (Meister et al., UnFlow), borders excluded."""
    a = _census_transform(_gray(pred) * 255.0, patch)
    b = _census_transform(_gray(target) * 255.0, patch)
    d = (a - b) ** 2
    dist = (d / (0.1 + d)).mean(dim=1, keepdim=True)
    border = torch.zeros_like(dist[:1])
    r = patch // 2
    border[..., r:dist.shape[-2] - r, r:dist.shape[-1] - r] = 1.0
    valid = border if mask is None else border * mask
    return _masked_mean(dist, valid)


def ssim_loss(pred: torch.Tensor, target: torch.Tensor, window: int = 11, sigma: float = 1.5
              ) -> torch.Tensor:
    """1 - SSIM with a Gaussian window, data range 1 (valid region only, per channel)."""
    c = pred.shape[1]
    x = torch.arange(window, device=pred.device, dtype=pred.dtype) - (window - 1) / 2
    g = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    kernel = (g[:, None] * g[None, :]).expand(c, 1, window, window).contiguous()

    def blur(v: torch.Tensor) -> torch.Tensor:
        return F.conv2d(v, kernel, groups=c)

    mu_x, mu_y = blur(pred), blur(target)
    var_x = blur(pred * pred) - mu_x ** 2
    var_y = blur(target * target) - mu_y ** 2
    cov = blur(pred * target) - mu_x * mu_y
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    ssim = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return 1.0 - ssim.mean()


def epe(flow: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean end-point error in pixels (over ``mask`` > 0 when given, mask (B,1,H,W))."""
    err = torch.sqrt(((flow - gt) ** 2).sum(dim=1, keepdim=True) + 1e-12)
    return _masked_mean(err, mask)


@torch.no_grad()
def occlusion_mask_from_flows(flow_ab: torch.Tensor, flow_ba: torch.Tensor,
                              alpha1: float = 0.01, alpha2: float = 0.5) -> torch.Tensor:
    """(B,1,H,W) float, 1 where a pixel of image a is occluded in image b.

    Forward-backward check (Sundaram et al.): following ``flow_ab`` and then ``flow_ba`` should
    come back to the start; where it does not, the pixel has no consistent match.
    """
    back = warp(flow_ba, flow_ab)
    mismatch = ((flow_ab + back) ** 2).sum(dim=1, keepdim=True)
    bound = alpha1 * ((flow_ab ** 2).sum(dim=1, keepdim=True) + (back ** 2).sum(dim=1, keepdim=True)) + alpha2
    return (mismatch > bound).to(flow_ab.dtype)


def smoothness_loss(flow: torch.Tensor, img: torch.Tensor, edge_weight: float = 10.0) -> torch.Tensor:
    """Edge-aware first-order smoothness: flow may change where the image has an edge."""
    def grads(v):
        return v[..., :, 1:] - v[..., :, :-1], v[..., 1:, :] - v[..., :-1, :]
    fx, fy = grads(flow)
    ix, iy = grads(img)
    wx = torch.exp(-edge_weight * ix.abs().mean(dim=1, keepdim=True))
    wy = torch.exp(-edge_weight * iy.abs().mean(dim=1, keepdim=True))
    return (wx * fx.abs()).mean() + (wy * fy.abs()).mean()


def flow_loss(pred_pyramid: list[tuple[torch.Tensor, torch.Tensor]],
              gt_flows: torch.Tensor | None, img0: torch.Tensor, img1: torch.Tensor,
              gt_valid: torch.Tensor | None = None, epe_weight: float = 1.0,
              photo_weight: float = 1.0, smooth_weight: float = 0.05,
              photometric: str = "census", level_gamma: float = 0.5,
              ) -> tuple[torch.Tensor, dict[str, float]]:
    """Multi-scale loss for FlowNet pretraining.

    pred_pyramid: ``[(flow_01, flow_10), ...]`` coarse to fine at image resolution (as
    ``FlowNet(..., return_pyramid=True)`` returns); level i of L weighs ``level_gamma**(L-1-i)``.
    gt_flows: (B,2,2,H,W) with ``[:,0]`` = flow 0->1 and ``[:,1]`` = flow 1->0 (the HDF5 store's
    layout), or None; gt_valid: (B,) bool, which samples have GT or pseudo flow.
    Terms: EPE against the GT on pixels that pass the GT's own forward-backward check (pseudo-flow
    is unreliable where occluded); census (or Charbonnier) photometric error of each image warped
    onto the other, on pixels the prediction considers visible; edge-aware smoothness of the
    finest flows. Returns (total, {"epe", "photo", "smooth", "total"}).
    """
    if photometric not in ("census", "charbonnier"):
        raise ValueError(f"unknown photometric term {photometric!r}; valid: census, charbonnier")
    photo_fn = census_loss if photometric == "census" else charbonnier
    n = len(pred_pyramid)
    zero = img0.new_zeros(())
    epe_total, photo_total = zero, zero
    gt_mask = None
    if gt_flows is not None and epe_weight > 0:
        gt01, gt10 = gt_flows[:, 0], gt_flows[:, 1]
        valid01 = 1 - occlusion_mask_from_flows(gt01, gt10)
        valid10 = 1 - occlusion_mask_from_flows(gt10, gt01)
        if gt_valid is not None:
            has_gt = gt_valid.to(img0.dtype).view(-1, 1, 1, 1)
            valid01, valid10 = valid01 * has_gt, valid10 * has_gt
        gt_mask = (valid01, valid10)
    for i, (f01, f10) in enumerate(pred_pyramid):
        w = level_gamma ** (n - 1 - i)
        if gt_mask is not None:
            epe_total = epe_total + w * 0.5 * (epe(f01, gt01, gt_mask[0]) + epe(f10, gt10, gt_mask[1]))
        if photo_weight > 0:
            vis0 = 1 - occlusion_mask_from_flows(f01, f10)
            vis1 = 1 - occlusion_mask_from_flows(f10, f01)
            photo_total = photo_total + w * 0.5 * (
                photo_fn(warp(img1, f01), img0, mask=vis0) + photo_fn(warp(img0, f10), img1, mask=vis1)
            )
    f01, f10 = pred_pyramid[-1]
    smooth = 0.5 * (smoothness_loss(f01, img0) + smoothness_loss(f10, img1)) if smooth_weight > 0 else zero
    total = epe_weight * epe_total + photo_weight * photo_total + smooth_weight * smooth
    parts = {k: float(v.detach()) for k, v in
             (("epe", epe_total), ("photo", photo_total), ("smooth", smooth), ("total", total))}
    return total, parts


class VGGPerceptualLoss(nn.Module):
    """L1 distance between VGG19 features (relu1_2, relu2_2, relu3_4, relu4_4), ImageNet-normalised.

    Weights come from ``weights_path`` or the torch hub cache; this never downloads. The network
    is frozen and stays in eval mode.
    """

    # indices of relu1_2, relu2_2, relu3_4, relu4_4 in torchvision's vgg19().features
    LAYERS = (3, 8, 17, 26)

    def __init__(self, weights_path: str | Path | None = None):
        super().__init__()
        from torchvision.models import vgg19

        path = Path(weights_path) if weights_path else default_vgg19_path()
        if not path.is_file():
            raise CheckpointError(path, "VGG19 weights not found")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise CheckpointError(path, f"cannot read VGG19 weights: {e}") from e
        # Built on the meta device: only the layers up to relu4_4 get real storage, filled from
        # the file (the full network would allocate and randomly initialise 143M parameters).
        with torch.device("meta"):
            net = vgg19(weights=None)
        features = net.features[: self.LAYERS[-1] + 1]
        if not isinstance(state, dict):
            raise CheckpointError(path, "not torchvision VGG19 weights (not a state dict)")
        # The file holds the whole network (features.*, classifier.*); take the layers we use.
        wanted = {k: state.get(f"features.{k}") for k in features.state_dict()}
        missing = [f"features.{k}" for k, v in wanted.items() if v is None]
        if missing:
            raise CheckpointError(path, f"not torchvision VGG19 weights: missing {', '.join(missing[:3])}")
        features = features.to_empty(device="cpu")
        try:
            features.load_state_dict(wanted, strict=True)
        except RuntimeError as e:
            raise CheckpointError(path, f"not torchvision VGG19 weights: {e}") from e
        self.features = features.eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        self.source = str(path)

    def train(self, mode: bool = True) -> VGGPerceptualLoss:
        # A loss network never trains; keep it in eval whatever the caller does.
        return super().train(False)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        x = (torch.cat((pred, target)) - self.mean) / self.std
        loss = pred.new_zeros(())
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.LAYERS:
                a, b = x.chunk(2)
                loss = loss + F.l1_loss(a, b.detach())
        return loss / len(self.LAYERS)


def default_vgg19_path() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG19_HUB_FILE


def make_perceptual_loss(weights_path: str | Path | None = None) -> VGGPerceptualLoss | None:
    """The VGG perceptual loss, or None (with one warning) when its weights are not on disk."""
    path = Path(weights_path) if weights_path else default_vgg19_path()
    if not path.is_file():
        logger.warning("VGG19 weights not found at %s; training without the perceptual loss", path)
        return None
    return VGGPerceptualLoss(path)


def vfi_loss(out: dict[str, torch.Tensor], target: torch.Tensor, weights: dict[str, float],
             perceptual: VGGPerceptualLoss | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted sum of reconstruction terms on ``out["pred"]``; terms with weight 0 are skipped.

    weights: any of VFI_LOSS_TERMS -> float. "perceptual" counts only when ``perceptual`` is given.
    Returns (total, {term: value, ..., "total": value}) with plain floats for logging.
    """
    unknown = sorted(set(weights) - set(VFI_LOSS_TERMS))
    if unknown:
        raise ValueError(f"unknown loss terms {unknown}; valid: {', '.join(VFI_LOSS_TERMS)}")
    pred = out["pred"]
    terms = {
        "charbonnier": lambda: charbonnier(pred, target),
        "census": lambda: census_loss(pred, target),
        "ssim": lambda: ssim_loss(pred, target),
        "perceptual": lambda: perceptual(pred, target),
    }
    total = pred.new_zeros(())
    parts = {}
    for name, w in weights.items():
        if not w or (name == "perceptual" and perceptual is None):
            continue
        value = terms[name]()
        total = total + w * value
        parts[name] = float(value.detach())
    parts["total"] = float(total.detach())
    return total, parts
