"""Run the training recipe ablation: each change alone, same data, budget and seeds.

    .venv/bin/python tools/ablation.py                      # every variant, in this project
    .venv/bin/python tools/ablation.py --only default colour  # some of them
    .venv/bin/python tools/ablation.py --table              # only rebuild the table

Each variant is one ``kedro run --pipelines flow_pretraining,vfi_training,evaluation`` with
``--params`` overrides on top of conf/base (the store from data_ingestion is shared). Its
metrics.json is kept as data/08_reporting/ablation/<variant>.json and the table
data/08_reporting/ablation/ablation.md compares model and prior on the seen and unseen style
families (docs/training.md quotes it).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

# name -> (what it changes, --params overrides). "default" is conf/base as committed; each
# variant changes one thing relative to the reference its description names. (The table of the previous fixed core, with
# the variants of that time, is in docs/training.md "Transfer"; `git show 473f3bb:tools/ablation.py`.)
# The rows after "both_seed_1" were measured before `intermediate: all` became the default, against
# "flow_finetuned" (docs/training.md, "The selector's recipe"); they keep `intermediate: both`
# so that they reproduce those figures.
BOTH = {"vfi_model.intermediate": "both"}
VARIANTS: dict[str, tuple[str, dict[str, object]]] = {
    "default": ("conf/base as committed", {}),
    "default_seed_1": ("default with seed 1 instead of 0", {"vfi_training.loop.seed": 1}),
    "default_no_synthesis": ("default without a synthesis network (backbone none)", {"vfi_model.backbone": "none"}),
    "default_8_epochs": ("default with 8 VFI epochs", {"vfi_training.loop.epochs": 8}),
    "both": ("two estimates per frame (linear, splatted) instead of four: the previous default", BOTH),
    "both_seed_1": ("both, seed 1", {**BOTH, "vfi_training.loop.seed": 1}),
    "flow_finetuned": ("both, and the flow network fine-tuned in VFI training (freeze_flow = false); "
                       "the reference of the rows below, which were measured against it",
                       {**BOTH, "vfi_model.freeze_flow": False}),
    "frozen_8_epochs": ("both, 8 VFI epochs (about the time flow_finetuned takes for 6)",
                        {**BOTH, "vfi_training.loop.epochs": 8}),
    "no_synthesis": ("both, no synthesis network (backbone none): the prior and the warp selector only",
                     {**BOTH, "vfi_model.backbone": "none"}),
    "no_synthesis_flow_finetuned": ("no_synthesis with the flow fine-tuned",
                                    {**BOTH, "vfi_model.backbone": "none", "vfi_model.freeze_flow": False}),
    "lr_3e-4": ("flow_finetuned, VFI lr 3e-4", {**BOTH, "vfi_model.freeze_flow": False, "vfi_training.loop.lr": 3e-4}),
    "lr_5e-4": ("flow_finetuned, VFI lr 5e-4", {**BOTH, "vfi_model.freeze_flow": False, "vfi_training.loop.lr": 5e-4}),
    "lr_2e-3": ("flow_finetuned, VFI lr 2e-3", {**BOTH, "vfi_model.freeze_flow": False, "vfi_training.loop.lr": 2e-3}),
    "colour": ("flow_finetuned, colour augmentation (channel order, gamma per channel)",
               {**BOTH, "vfi_model.freeze_flow": False, "vfi_training.data.colour": True}),
    "selector_48": ("flow_finetuned, a selector twice as wide (selector_width 48)",
                    {**BOTH, "vfi_model.freeze_flow": False, "vfi_model.selector_width": 48}),
    "seed_1": ("flow_finetuned, seed 1 instead of 0 (run-to-run spread)",
               {**BOTH, "vfi_model.freeze_flow": False, "vfi_training.loop.seed": 1}),
}
PIPELINES = "flow_pretraining,vfi_training,evaluation"
ROWS = (("all", ""), ("unseen style", "_unseen_style"), ("seen styles", "_seen_style"))


def run_variant(project: Path, name: str, overrides: dict[str, object], out: Path) -> None:
    params = ",".join(f"{k}={json.dumps(v) if isinstance(v, bool) else v}" for k, v in overrides.items())
    cmd = [str(Path(sys.executable).parent / "kedro"), "run", "--pipelines", PIPELINES]
    if params:
        cmd += ["--params", params]
    print(f"[{name}] {' '.join(cmd)}", flush=True)
    started = time.perf_counter()
    subprocess.run(cmd, cwd=project, check=True)
    metrics = json.loads((project / "data/08_reporting/metrics.json").read_text())
    metrics["_ablation"] = {"variant": name, "overrides": overrides, "seconds": round(time.perf_counter() - started)}
    tmp = out / f"{name}.json.tmp"
    tmp.write_text(json.dumps(metrics, indent=2) + "\n")
    tmp.replace(out / f"{name}.json")


def table(out: Path) -> str:
    """Markdown: per variant, model and prior PSNR / SSIM and model - prior, per style group."""
    header = "| variant | " + " | ".join(f"{label}: model / prior / gain (dB), model SSIM" for label, _ in ROWS) + " |"
    lines = [header, "|---|" + "---|" * len(ROWS)]
    for name in VARIANTS:
        path = out / f"{name}.json"
        if not path.exists():
            continue
        m = json.loads(path.read_text())
        cells = []
        for _, key in ROWS:
            model, prior = m["model"].get(f"psnr{key}"), m["prior"].get(f"psnr{key}")
            if model is None or prior is None:
                cells.append("-")
                continue
            cells.append(f"{model:.2f} / {prior:.2f} / {model - prior:+.2f}, {m['model'][f'ssim{key}']:.4f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")
    lines += [f"- **{n}**: {what}" for n, (what, _) in VARIANTS.items() if (out / f"{n}.json").exists()]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--project", type=Path, default=Path.cwd())
    ap.add_argument("--only", nargs="*", choices=list(VARIANTS), help="variants to run (default: all)")
    ap.add_argument("--table", action="store_true", help="only rebuild the table from saved results")
    args = ap.parse_args()
    out = args.project / "data/08_reporting/ablation"
    out.mkdir(parents=True, exist_ok=True)
    if not args.table:
        for name in args.only or list(VARIANTS):
            run_variant(args.project, name, VARIANTS[name][1], out)
    text = table(out)
    (out / "ablation.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
