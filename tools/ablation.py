"""Run the training recipe ablation: each change alone, same data, budget and seeds.

    .venv/bin/python tools/ablation.py                      # every variant, in this project
    .venv/bin/python tools/ablation.py --only base gates    # some of them
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

# name -> (what it changes, --params overrides). "default" is conf/base as committed; every
# other variant changes one thing relative to it.
VARIANTS: dict[str, tuple[str, dict[str, object]]] = {
    "default": ("conf/base as committed (the flow network is fine-tuned in VFI training)", {}),
    "frozen_flow": ("the flow network stays fixed in VFI training (freeze_flow = true); the reference "
                    "for the rows below", {"vfi_model.freeze_flow": True}),
    "no_flow_check": ("frozen_flow, and the pretrained flow residual is always kept (flow_check = false)",
                      {"vfi_model.freeze_flow": True, "vfi_training.flow_check": False}),
    "no_flow_check_no_gates": ("no_flow_check, and learned corrections everywhere (both gates 0)",
                               {"vfi_model.freeze_flow": True, "vfi_training.flow_check": False,
                                "vfi_model.correction_gate": 0.0, "flow_model.residual_gate": 0.0}),
    "no_gates": ("frozen_flow, and learned corrections everywhere (both gates 0)",
                 {"vfi_model.freeze_flow": True, "vfi_model.correction_gate": 0.0,
                  "flow_model.residual_gate": 0.0}),
    "census": ("frozen_flow, and a census term in the loss (weight 0.5)",
               {"vfi_model.freeze_flow": True, "vfi_training.loss.census": 0.5}),
    "long": ("default with twice the VFI epochs (12)", {"vfi_training.loop.epochs": 12}),
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
