"""The ``animvfi`` console script: ``animvfi interpolate INPUT -o OUTPUT [options]``.
(Named console.py, not cli.py: Kedro treats <package>/cli.py as the home of `kedro` project commands.)

User-facing messages go to stderr; a bad input, checkpoint or output location ends with one line
naming the file and a non-zero exit code, never a traceback.
"""
from __future__ import annotations

import argparse
import logging
import sys
from fractions import Fraction
from pathlib import Path

from animvfi_pipeline.errors import CheckpointError, DataError

DEFAULT_MODEL = Path("data") / "06_models" / "vfi.pt"
CLASSICAL = "classical"
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
DEFAULT_ADAPT_SECONDS = 120.0  # two CPU minutes: ~70 steps of 4 crops on a busy 2-core CPU (docs/interpolate.md)

log = logging.getLogger("animvfi_pipeline")


def build_parser() -> argparse.ArgumentParser:
    from animvfi_pipeline import __version__
    from animvfi_pipeline.inference.scenes import DEFAULT_DUP_THRESHOLD, DEFAULT_SCENE_THRESHOLD

    parser = argparse.ArgumentParser(prog="animvfi", description="Animation video frame interpolation.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser(
        "interpolate", help="make a clip smoother: insert in-between frames or retime to a frame rate",
        description="Insert in-between frames into a video or a folder of frames. "
                    "See docs/interpolate.md for examples.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.set_defaults(subparser=p)  # so that usage errors show this command's usage
    p.add_argument("input", type=Path, help="video file (mp4, mkv, webm, gif, ...) or folder of PNG/JPG frames")
    p.add_argument("-o", "--output", type=Path, required=True,
                   help="output video (.mp4, .mkv, .mov, .webm, .gif) or folder for PNG frames (no suffix)")
    timing = p.add_mutually_exclusive_group()
    timing.add_argument("--factor", type=int, default=None,
                        help="frames per input frame: 2 doubles the frame rate (default 2)")
    timing.add_argument("--fps", type=str, default=None, help="target frame rate, e.g. 60, 59.94 or 60000/1001")
    p.add_argument("--input-fps", type=str, default="24", help="frame rate of an input folder of frames")
    p.add_argument("--model", type=str, default=None,
                   help=f"trained vfi.pt (default: the project's {DEFAULT_MODEL}), an MLflow model URI "
                        "such as models:/animvfi-vfi@champion (the project's mlflow.db unless "
                        f"MLFLOW_TRACKING_URI says otherwise), or '{CLASSICAL}' for the no-training DIS baseline")
    p.add_argument("--device", default="auto", help="auto (CUDA if available, else CPU), cpu, cuda, cuda:N")
    p.add_argument("--precision", choices=("fp32", "fp16", "bf16"), default="fp32",
                   help="autocast precision on CUDA")
    p.add_argument("--fp16", dest="precision", action="store_const", const="fp16", help="same as --precision fp16")
    p.add_argument("--batch-size", type=int, default=None,
                   help="in-between frames of a pair per forward pass, sharing its flow (default 4; 1 uses least memory)")
    p.add_argument("--flow-scale", type=float, default=None,
                   help="run the network at this scale (e.g. 0.5 for 4K) and warp at full size; "
                        "default: chosen from --max-side")
    p.add_argument("--max-side", type=int, default=2048,
                   help="without --flow-scale, frames longer than this are processed at a reduced scale")
    p.add_argument("--flips", type=int, choices=(1, 2, 4), default=None,
                   help="average this many mirrored passes of the network (default: the model's own "
                        "setting, 4 for the embedded default's model); 1 is fastest")
    p.add_argument("--flow-candidates", type=_candidates, default=None, metavar="LIST",
                   help="DIS variants to choose the flow among, per pair, by how well each explains the "
                        "colours, e.g. fine,fine-pca,fine-alpha10; 'none': the model's single preset "
                        "(default: the model's own setting)")
    p.add_argument("--warp", choices=("bilinear", "bicubic"), default=None,
                   help="how frames are sampled along the flows: bicubic keeps fine texture (paper grain, "
                        "hatching) that bilinear blurs (default: the model's own setting)")
    p.add_argument("--tile", type=int, default=0,
                   help="process frames in overlapping tiles of this many pixels (0 = whole frames)")
    p.add_argument("--scene-threshold", type=float, default=DEFAULT_SCENE_THRESHOLD,
                   help="scene cut when the mean colour difference of two frames exceeds this (0..1; 1 = never)")
    p.add_argument("--dedup", action="store_true",
                   help="re-time held drawings (anime on twos/threes) so motion is even")
    p.add_argument("--dup-threshold", type=float, default=DEFAULT_DUP_THRESHOLD,
                   help="a frame repeats the previous drawing when at most this fraction of its pixels changed")
    p.add_argument("--max-hold", type=int, default=3,
                   help="with --dedup, drawings held longer than this many frames are pauses, kept still")
    adapt = p.add_argument_group("test-time adaptation (docs/interpolate.md, --adapt)")
    adapt.add_argument("--adapt", action="store_true",
                       help="first fine-tune a copy of the model on the clip's own drawings; it is used only "
                            "if it interpolates held-out drawings of the clip better")
    adapt.add_argument("--adapt-seconds", type=float, default=None,
                       help=f"time budget of --adapt in seconds (default {DEFAULT_ADAPT_SECONDS:g}, or none "
                            "when only --adapt-steps is given)")
    adapt.add_argument("--adapt-steps", type=int, default=None,
                       help="stop --adapt after this many training steps (whichever of the two comes first)")
    p.add_argument("--codec", default=None, help="video encoder (default: libx264 for mp4/mkv/mov, VP9 for webm)")
    p.add_argument("--crf", type=int, default=18, help="x264/VP9 quality, lower is better")
    p.add_argument("--preset", default="medium", help="x264 speed preset (ultrafast ... veryslow)")
    p.add_argument("-y", "--overwrite", action="store_true", help="replace OUTPUT if it exists")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or notes, only errors")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command != "interpolate":
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    _setup_logging(args.quiet)
    try:
        return _interpolate(args.subparser, args)
    except (DataError, CheckpointError) as exc:
        return _fail(exc)
    except KeyboardInterrupt:
        print(f"animvfi: interrupted; nothing was written to {args.output}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 -- the errors below are known and deserve one line
        from animvfi_pipeline.inference.video_io import OutputError
        import torch

        if isinstance(exc, OutputError):
            return _fail(exc)
        if isinstance(exc, torch.cuda.OutOfMemoryError):
            return _fail(f"out of GPU memory at {args.input}: try --flow-scale 0.5, --tile 512, "
                         f"--batch-size 1 or --device cpu")
        raise


def _interpolate(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from animvfi_pipeline.inference import interpolate as interp
    from animvfi_pipeline.inference.schedule import parse_rate
    from animvfi_pipeline.inference.video_io import VideoSettings, choose_video_codec

    try:
        fps = parse_rate(args.fps) if args.fps is not None else None
        folder_fps = parse_rate(args.input_fps)
    except ValueError as exc:
        parser.error(str(exc))
    factor = 2 if args.factor is None else args.factor
    if factor < 1:
        parser.error(f"--factor must be 1 or more, got {factor}")
    if args.batch_size is not None and args.batch_size < 1:
        parser.error(f"--batch-size must be 1 or more, got {args.batch_size}")
    if args.max_hold < 1:
        parser.error(f"--max-hold must be 1 or more, got {args.max_hold}")
    if (args.adapt_seconds is not None or args.adapt_steps is not None) and not args.adapt:
        parser.error("--adapt-seconds and --adapt-steps only apply with --adapt")
    if args.adapt and args.model == CLASSICAL:
        parser.error(f"--adapt fine-tunes a trained model; --model {CLASSICAL} has nothing to learn")
    if args.codec:
        try:
            choose_video_codec(args.output.suffix, None, args.codec)
        except ValueError as exc:
            parser.error(str(exc))
    if not args.input.exists():
        raise DataError(args.input, "does not exist")

    interpolator = _make_interpolator(parser, args)
    config = interp.InterpolateConfig(
        factor=factor, fps=fps, scene_threshold=args.scene_threshold, dup_threshold=args.dup_threshold,
        dedup=args.dedup, max_hold=args.max_hold, folder_fps=folder_fps,
        video=VideoSettings(codec=args.codec, crf=args.crf, preset=args.preset),
        overwrite=args.overwrite, progress=not args.quiet,
    )
    result = interp.interpolate_clip(args.input, args.output, interpolator, config)
    if not args.quiet:
        print(f"animvfi: wrote {result.output} ({result.n_source} -> {result.n_output} frames, "
              f"{_rate(result.fps_in)} -> {_rate(result.fps_out)} fps, {result.seconds:.1f} s)", file=sys.stderr)
    return 0


def _candidates(text: str) -> list[str]:
    """--flow-candidates: a comma-separated list of DIS variants, or 'none'."""
    from animvfi_pipeline.data.flow import DIS_PRESETS

    names = [] if text.strip().lower() == "none" else [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in DIS_PRESETS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown DIS variant(s) {', '.join(unknown)}; choose among "
                                         f"{', '.join(sorted(DIS_PRESETS))} or 'none'")
    return names


def _make_interpolator(parser: argparse.ArgumentParser, args: argparse.Namespace):
    from animvfi_pipeline.inference import interpolate as interp

    if args.model == CLASSICAL:
        log.info("using the classical DIS optical-flow baseline (no trained model)")
        return interp.classical_interpolator()
    settings = interp.ModelSettings(device=args.device, precision=args.precision, batch_size=args.batch_size,
                                    flow_scale=args.flow_scale, max_side=args.max_side, tile=args.tile,
                                    flips=args.flips, flow_candidates=args.flow_candidates,
                                    warp_mode=args.warp)
    try:
        interpolator = interp.ModelInterpolator(_load_model(args.model, settings.device), settings)
    except ValueError as exc:
        parser.error(str(exc))
    if args.adapt:
        interpolator.model = _adapted(parser, args, interpolator)
    return interpolator


def _adapted(parser: argparse.ArgumentParser, args: argparse.Namespace, interpolator):
    """The model --adapt settles on for this clip (the original one unless adapting helped)."""
    from animvfi_pipeline.inference.adapt import AdaptConfig, adapt_to_clip
    from animvfi_pipeline.inference.schedule import parse_rate
    from animvfi_pipeline.inference.video_io import check_output_location

    check_output_location(args.output, args.overwrite)  # before minutes of adapting, not after

    seconds = args.adapt_seconds
    if seconds is None and args.adapt_steps is None:
        seconds = DEFAULT_ADAPT_SECONDS
    try:
        config = AdaptConfig(seconds=seconds, steps=args.adapt_steps)
    except ValueError as exc:
        parser.error(f"--{exc}")
    result = adapt_to_clip(interpolator.model, args.input, config, interpolator.device, progress=not args.quiet,
                           folder_fps=parse_rate(args.input_fps))
    if not args.quiet:
        print(f"animvfi: {result.summary()}", file=sys.stderr)
    return result.model.eval()


def _load_model(model: str | None, device: str):
    """The VFIModel ``--model`` names: a vfi.pt, an MLflow URI, or (None) the project's own model."""
    from animvfi_pipeline.inference.interpolate import load_vfi_model_from, resolve_device
    from animvfi_pipeline.tracking.model_source import is_mlflow_uri

    if model is not None and is_mlflow_uri(model):
        _use_project_tracking_store()
        log.info("using the MLflow model %s", model)
        source = model
    elif model is not None:
        source = Path(model)
    else:
        source = find_default_model()
        if source is None:
            raise CheckpointError(
                DEFAULT_MODEL,
                "no trained model here. Train one with `make run` (or `kedro run`) in the project folder, "
                f"pass --model PATH to a vfi.pt, or use --model {CLASSICAL} for the no-training baseline",
            )
        log.info("using the project's model %s (pass --model to choose another)", source)
    return load_vfi_model_from(source, resolve_device(device))


def find_default_model(start: Path | None = None) -> Path | None:
    """``data/06_models/vfi.pt`` under the current directory or the Kedro project that contains it."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / DEFAULT_MODEL
        if candidate.is_file():
            return candidate
        if (folder / "pyproject.toml").is_file() and (folder / "conf").is_dir():
            return None  # the project root: do not wander into unrelated folders above it
    return None


def find_project_root(start: Path | None = None) -> Path | None:
    """The Kedro project (pyproject.toml + conf/) that contains ``start`` (default: the current directory)."""
    here = (start or Path.cwd()).resolve()
    return next((f for f in (here, *here.parents) if (f / "pyproject.toml").is_file() and (f / "conf").is_dir()),
                None)


def _use_project_tracking_store() -> None:
    """Registry URIs resolve against the project's ``mlflow.db`` (where `kedro run` tracks), unless
    MLFLOW_TRACKING_URI names another store; MLflow alone would make an empty mlflow.db here."""
    import os

    if os.environ.get("MLFLOW_TRACKING_URI"):
        return
    root = find_project_root()
    if root is None or not (root / "mlflow.db").is_file():
        raise CheckpointError(Path("mlflow.db"), "no MLflow store here: run `make run` in the project folder "
                                                 "first, or set MLFLOW_TRACKING_URI")
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")


def _setup_logging(quiet: bool) -> None:
    # Replace rather than keep our handler: sys.stderr may have changed since the last call.
    for handler in [h for h in log.handlers if getattr(h, "animvfi_cli", False)]:
        log.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("animvfi: %(message)s"))
    handler.animvfi_cli = True
    log.addHandler(handler)
    log.setLevel(logging.WARNING if quiet else logging.INFO)


def _fail(exc: Exception | str) -> int:
    print(f"animvfi: error: {exc}", file=sys.stderr)
    return EXIT_ERROR


def _rate(rate: Fraction) -> str:
    return str(rate.numerator) if rate.denominator == 1 else f"{float(rate):.3f}"


if __name__ == "__main__":
    sys.exit(main())
