"""What differs between the two training stages, bundled as a Task for the one loop.

``FlowTask``: FlowNet against the store's flow (exact for synthetic data, pseudo-flow for real
data) plus a photometric term; picks the epoch with the lowest validation EPE.
``VFITask``: VFIModel around the pretrained FlowNet (frozen or fine-tuned, per ``freeze_flow``);
picks the epoch with the highest validation PSNR.

``fit_flow`` / ``fit_vfi`` are what every training process runs (inline, under ``launch``, or
under torchrun): build the datasets and the task from plain parameter dicts, then ``train``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from animvfi_pipeline.data.torch_dataset import TripletDataset
from animvfi_pipeline.models.checkpoint import build_flownet, build_vfi_model, make_checkpoint
from animvfi_pipeline.models.flownet import FlowNet, FlowNetConfig
from animvfi_pipeline.models.vfi import VFIConfig, VFIModel
from animvfi_pipeline.training.losses import flow_loss, make_perceptual_loss, ssim_loss, vfi_loss
from animvfi_pipeline.training.loop import TrainConfig, TrainResult, train
from animvfi_pipeline.training.tracking import get_logger

log = logging.getLogger(__name__)


class Task(Protocol):
    name: str  # metric prefix and progress label: "flow" | "vfi"
    metric: str  # validation metric that picks the best epoch, e.g. "epe"
    mode: str  # "min" | "max" for that metric
    val_metrics: tuple[str, ...]  # keys evaluate() returns, besides "count"

    def build_model(self) -> torch.nn.Module: ...

    def loss(self, model: torch.nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]: ...

    def evaluate(self, model: torch.nn.Module, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Per-sample metric SUMS over the batch and its sample ``count``, so that they add up
        exactly across batches and ranks."""
        ...

    def make_checkpoint(self, model: torch.nn.Module) -> dict[str, Any]: ...


class FlowTask:
    name = "flow"
    mode = "min"

    def __init__(self, model_config: dict[str, Any], loss: dict[str, Any] | None = None, with_gt: bool = True,
                 start: StartingPoint | None = None):
        # Fine-tuning: the weights decide the architecture, so the checkpoint's config wins.
        self.start = start
        self.config = FlowNetConfig.from_dict(start.checkpoint["model_config"] if start else dict(model_config))
        if start:
            start.warn_about_ignored(model_config, self.config.to_dict())
        self.loss_options = dict(loss or {})
        self.with_gt = with_gt
        # Without stored flow there is nothing to measure EPE against; the photometric error
        # (what the network is then trained on) picks the best epoch instead.
        self.metric = "epe" if with_gt else "photo"
        self.val_metrics = (self.metric,)

    def build_model(self) -> FlowNet:
        if self.start:
            return build_flownet(self.start.checkpoint, source=self.start.source)
        return FlowNet(self.config)

    def loss(self, model, batch):
        *_, pyramid = model(batch["img0"], batch["img1"], return_pyramid=True, prior=batch.get("prior"))
        with _float32(batch):
            pyramid = [(f01.float(), f10.float()) for f01, f10 in pyramid]
            return flow_loss(pyramid, _gt_flows(batch), batch["img0"].float(), batch["img1"].float(),
                             **self.loss_options)

    def evaluate(self, model, batch):
        f01, f10 = model(batch["img0"], batch["img1"], prior=batch.get("prior"))
        with _float32(batch):
            return self._metrics(f01.float(), f10.float(), batch)

    def _metrics(self, f01, f10, batch):
        n = torch.tensor(len(f01))
        if self.with_gt:
            per_sample = 0.5 * (_epe_per_sample(f01, batch["flow_01"]) + _epe_per_sample(f10, batch["flow_10"]))
            return {"epe": per_sample.sum(), "count": n}
        photo = [flow_loss([(f01[i : i + 1], f10[i : i + 1])], None, batch["img0"][i : i + 1].float(),
                           batch["img1"][i : i + 1].float(), smooth_weight=0.0)[1]["photo"] for i in range(len(f01))]
        return {"photo": torch.tensor(sum(photo), dtype=torch.float64), "count": n}

    def make_checkpoint(self, model) -> dict[str, Any]:
        return make_checkpoint("animvfi.flownet", model, self.config.to_dict(), **_provenance(self.start))

    def figure(self, model, batch):
        from animvfi_pipeline.data.flow import flow_to_color

        f01, _ = model(batch["img0"][:1], batch["img1"][:1], prior=_first(batch.get("prior")))
        panels = {"frame 1": _rgb(batch["img0"][0]), "predicted flow 1->3": flow_to_color(_np(f01[0]))}
        if "flow_01" in batch:
            panels["stored flow 1->3"] = flow_to_color(_np(batch["flow_01"][0]))
        return _panels(panels)


class VFITask:
    name = "vfi"
    metric = "psnr"
    mode = "max"
    val_metrics = ("psnr", "ssim")

    def __init__(self, model_config: dict[str, Any], flow_checkpoint: dict[str, Any] | None,
                 loss_weights: dict[str, float] | None = None, perceptual_weights: str | None = None,
                 start: StartingPoint | None = None):
        if "flow" in model_config:
            raise ValueError("vfi model parameters must not set 'flow': the flow network comes from "
                             "the pretrained flownet checkpoint")
        self.start = start
        if start:  # fine-tuning: the weights decide the architecture, flow network included
            self.config = VFIConfig.from_dict(start.checkpoint["model_config"])
            start.warn_about_ignored(model_config, self.config.to_dict())
        else:
            self.config = VFIConfig.from_dict({**model_config, "flow": flow_checkpoint["model_config"]})
        self.flow_checkpoint = flow_checkpoint
        self.loss_weights = dict(loss_weights or {"charbonnier": 1.0})
        self.perceptual_weights = perceptual_weights
        self._perceptual: torch.nn.Module | None = None
        self._perceptual_ready = False

    def build_model(self) -> VFIModel:
        if self.start:
            return build_vfi_model(self.start.checkpoint, source=self.start.source)
        flownet = build_flownet(self.flow_checkpoint, source="flownet_model")
        return VFIModel(self.config, flownet)

    def loss(self, model, batch):
        out = model(batch["img0"], batch["img1"], batch["t"], prior=batch.get("prior"))
        with _float32(batch):
            return vfi_loss({"pred": out["pred"].float()}, batch["target"].float(), self.loss_weights,
                            self._perceptual_loss(batch["target"]))

    def evaluate(self, model, batch):
        pred = model(batch["img0"], batch["img1"], batch["t"], prior=batch.get("prior"))["pred"]
        with _float32(batch):
            return self._metrics(pred.float().clamp(0, 1), batch["target"].float())

    @staticmethod
    def _metrics(pred, target):
        mse = ((pred - target) ** 2).mean(dim=(1, 2, 3)).clamp_min(1e-10)
        psnr = 10.0 * torch.log10(1.0 / mse)
        ssim = torch.stack([1.0 - ssim_loss(pred[i : i + 1], target[i : i + 1]) for i in range(len(pred))])
        return {"psnr": psnr.sum(), "ssim": ssim.sum(), "count": torch.tensor(len(pred))}

    def make_checkpoint(self, model) -> dict[str, Any]:
        return make_checkpoint("animvfi.vfi", model, self.config.to_dict(), **_provenance(self.start))

    def figure(self, model, batch):
        out = model(batch["img0"][:1], batch["img1"][:1], batch["t"][:1], prior=_first(batch.get("prior")))
        pred = out["pred"][0].float().clamp(0, 1)
        error = (pred - batch["target"][0].float()).abs().mean(0, keepdim=True).expand(3, -1, -1)
        return _panels({"frame 1": _rgb(batch["img0"][0]), "predicted": _rgb(pred),
                        "ground truth": _rgb(batch["target"][0]), "|error| x4": _rgb((4 * error).clamp(0, 1))})

    def _perceptual_loss(self, like: torch.Tensor) -> torch.nn.Module | None:
        # Built lazily in the training process, on its device: VGG weights never travel to workers.
        if not self._perceptual_ready:
            self._perceptual_ready = True
            if self.loss_weights.get("perceptual"):
                self._perceptual = make_perceptual_loss(self.perceptual_weights)
                if self._perceptual is not None:
                    self._perceptual = self._perceptual.to(like.device)
        return self._perceptual


@dataclass
class StartingPoint:
    """The trained model a fine-tuning run starts from (``init_from`` in the training parameters).

    The loop's ``validate_start`` scores these weights as epoch 0 and keeps them unless an epoch
    beats them, so fine-tuning never ends worse on validation than where it started.
    """

    source: str  # as the parameters give it: a path or an MLflow model URI
    checkpoint: dict[str, Any]
    weights_digest: str  # tracking.registry.weights_digest: evaluation finds the same weights again

    @classmethod
    def of(cls, training_params: dict[str, Any], kind: str) -> StartingPoint | None:
        """Resolve ``training_params["init_from"]`` (None: train from scratch, as before)."""
        from animvfi_pipeline.tracking.model_source import load_flow_checkpoint, load_vfi_checkpoint
        from animvfi_pipeline.tracking.registry import weights_digest

        source = training_params.get("init_from")
        if source is None:
            return None
        load = load_vfi_checkpoint if kind == "animvfi.vfi" else load_flow_checkpoint
        checkpoint = load(source)
        start = cls(str(source), checkpoint, weights_digest(checkpoint))
        log.info("fine-tuning from %s", start.source)
        return start

    def warn_about_ignored(self, params: dict[str, Any], used: dict[str, Any]) -> None:
        differ = sorted(k for k, v in params.items() if k in used and _plain(v) != used[k])
        if differ:
            log.warning("init_from %s: its model config wins (the weights need it); ignoring the "
                        "parameters' %s", self.source, ", ".join(differ))

    def provenance(self) -> dict[str, str]:
        """What the output checkpoint records about its start, so evaluation can score it beside."""
        return {"source": self.source, "weights_digest": self.weights_digest}


def _provenance(start: StartingPoint | None) -> dict[str, Any]:
    # No key at all without init_from: checkpoints trained from scratch stay exactly as before.
    return {"init_from": start.provenance()} if start else {}


def _plain(value: Any) -> Any:
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


# -- what each training process runs ----------------------------------------------------------


def make_datasets(store: Any, data: dict[str, Any], seed: int, flows: bool = True,
                  flow_config: FlowNetConfig | None = None) -> tuple[TripletDataset, TripletDataset]:
    """Training split (augmented crops) and validation split (fixed, t = 0.5). Never the test split.

    With a DIS-initialised flow network (``flow_config.init == "dis"``) the samples carry its
    prior: cut from the store's precomputed one when it was ingested with the same preset
    (``ingestion.dis_prior``), else computed on each sample's frames in the DataLoader workers.
    ``data["prior_from"]`` (``auto`` | ``store`` | ``frames``) forces one. Samples are ``compact``
    (uint8 frames, float16 flows); the loop makes them float32 on the device.
    """
    prior = flow_config.dis_preset if flow_config is not None and flow_config.init == "dis" else None
    prior_from = data.get("prior_from", "auto")
    if prior_from == "auto":
        prior_from = "store" if prior is not None and getattr(store, "prior_preset", None) == prior else "frames"
    if prior is not None:
        log.info("flow prior: DIS %s, %s", prior, "cut from the store" if prior_from == "store"
                 else "computed on each sample's frames in the DataLoader workers")
    train_set = TripletDataset(store, "train", crop=data.get("crop"), augment=data.get("augment", True),
                               times=data.get("times", "middle"), seed=seed, flows=flows, prior=prior,
                               prior_from=prior_from, compact=True, colour=data.get("colour", False))
    val_set = TripletDataset(store, "val", crop=data.get("val_crop"), augment=False, times="middle", seed=seed,
                             flows=flows, prior=prior, prior_from=prior_from, compact=True)
    log.info("training on %d samples, validating on %d", len(train_set), len(val_set))
    return train_set, val_set


def fit_flow(store: Any, model_params: dict[str, Any], training_params: dict[str, Any]) -> TrainResult | None:
    """Pretrain the flow network. Result on rank 0, None on other ranks."""
    cfg = TrainConfig.from_dict(dict(training_params.get("loop", {})))
    task = FlowTask(model_params, training_params.get("loss"), with_gt=getattr(store, "has_flows", True),
                    start=StartingPoint.of(training_params, "animvfi.flownet"))
    train_set, val_set = make_datasets(store, training_params.get("data", {}), cfg.seed, flow_config=task.config)
    return train(task, train_set, val_set, cfg, _logger(training_params))


def fit_vfi(store: Any, flow_checkpoint: dict[str, Any] | None, model_params: dict[str, Any],
            training_params: dict[str, Any]) -> TrainResult | None:
    """Train the interpolator around the pretrained flow network, or fine-tune the VFI model
    ``training_params["init_from"]`` names (then ``flow_checkpoint`` is not used). Result on rank 0,
    None elsewhere."""
    cfg = TrainConfig.from_dict(dict(training_params.get("loop", {})))
    task = VFITask(model_params, flow_checkpoint, training_params.get("loss"),
                   training_params.get("perceptual_weights"), start=StartingPoint.of(training_params, "animvfi.vfi"))
    train_set, val_set = make_datasets(store, training_params.get("data", {}), cfg.seed, flows=False,
                                       flow_config=task.config.flow)
    return train(task, train_set, val_set, cfg, _logger(training_params))


def flow_that_helps(store: Any, flow_checkpoint: dict[str, Any], model_params: dict[str, Any],
                    split: str = "val", limit: int | None = None) -> tuple[dict[str, Any], dict[str, float]]:
    """The flow checkpoint VFI training should start from, and the figures behind the choice.

    A pretrained flow network earns its place by what it adds to interpolation, not by its EPE:
    on ``split`` the VFI model before training (learned synthesis off) is scored at t = 0.5 with
    the pretrained flow network and with its prior (the same network with a zero residual, i.e.
    DIS flow). The pretrained checkpoint is kept only if it scores higher; otherwise an untrained
    flow network of the same config is returned. Returns ``(checkpoint, {"pretrained_psnr",
    "prior_psnr", "kept_pretrained"})``; checkpoints without a prior (``init: zero``) are kept
    as they are.
    """
    from animvfi_pipeline.evaluation.baselines import model_predictor
    from animvfi_pipeline.evaluation.report import evaluate_methods, summarize

    # One DIS field (no flow_candidates): the check compares the two flow networks on the same prior.
    cfg = VFIConfig.from_dict({**model_params, "flow": flow_checkpoint["model_config"], "flow_candidates": []})
    if cfg.flow.init != "dis" or len(store.indices(split)) == 0:
        return flow_checkpoint, {}
    untrained = FlowNet(cfg.flow)
    candidates = {"pretrained": VFIModel(cfg, build_flownet(flow_checkpoint, source="flownet_model")),
                  "prior": VFIModel(cfg, untrained)}
    # One pass each (not the config's mirrored passes): the check compares two flows, like with like.
    predictors = {k: model_predictor(m, flips=1) for k, m in candidates.items()}
    table = evaluate_methods(store, predictors, split=split, limit=limit)
    scores = {k: v["psnr"] for k, v in summarize(table).items()}
    keep = scores["pretrained"] > scores["prior"]
    log.info("flow check on %s: pretrained flow %.3f dB, its prior (DIS) %.3f dB: %s", split,
             scores["pretrained"], scores["prior"],
             "keeping the pretrained flow" if keep else "the pretrained residual does not help; starting from DIS")
    chosen = flow_checkpoint if keep else make_checkpoint("animvfi.flownet", untrained, cfg.flow.to_dict())
    return chosen, {"pretrained_psnr": scores["pretrained"], "prior_psnr": scores["prior"],
                    "kept_pretrained": float(keep)}


def _logger(training_params: dict[str, Any]):
    return get_logger(training_params.get("tracking", "auto"))


# -- small helpers -------------------------------------------------------------------------------


def _float32(batch: dict[str, Any]):
    """Losses and metrics in float32 even inside the loop's autocast (AMP covers the model only)."""
    return torch.autocast(batch["img0"].device.type, enabled=False)


def _first(x: torch.Tensor | None) -> torch.Tensor | None:
    return None if x is None else x[:1]


def _gt_flows(batch: dict[str, Any]) -> torch.Tensor | None:
    if "flow_01" not in batch:
        return None
    return torch.stack((batch["flow_01"], batch["flow_10"]), dim=1).float()


def _epe_per_sample(flow: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    return torch.sqrt(((flow - gt) ** 2).sum(dim=1)).mean(dim=(1, 2))


def _np(x: torch.Tensor):
    return x.detach().float().cpu().numpy()


def _rgb(img: torch.Tensor):
    """(3, H, W) in [0, 1] -> (H, W, 3) uint8."""
    return (_np(img).clip(0, 1).transpose(1, 2, 0) * 255 + 0.5).astype("uint8")


def _panels(images: dict[str, Any]):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3.2 * len(images), 2.4), layout="constrained")
    for ax, (title, img) in zip(fig.subplots(1, len(images)), images.items()):
        ax.imshow(img)
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
    return fig

