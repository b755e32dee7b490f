"""Render the Kedro-Viz pipeline graph to docs/images/pipeline.png with headless Chromium.

`kedro viz build` writes a static site; we serve it on loopback, pre-set Kedro-Viz's own
settings (light theme, left-to-right layout, no feature-hint tour) through localStorage, and take
a screenshot. Chromium runs with background networking off, so nothing leaves the machine.

Usage: python tools/render_pipeline_graph.py [--out docs/images/pipeline.png]  (needs `chromium`)
"""
from __future__ import annotations

import argparse
import functools
import http.server
import json
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VIZ_SETTINGS = {"theme": "light", "orientation": "vertical", "showFeatureHints": False, "textLabels": True}
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars",
]


def build_site(dest: Path) -> None:
    kedro = Path(sys.executable).with_name("kedro")
    subprocess.run([str(kedro), "viz", "build"], cwd=ROOT, check=True)
    shutil.copytree(ROOT / "build", dest)
    index = dest / "index.html"
    preset = f"<script>localStorage.setItem('KedroViz', JSON.stringify({json.dumps(VIZ_SETTINGS)}));</script>"
    index.write_text(index.read_text().replace("<head>", "<head>" + preset, 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs/images/pipeline.png")
    parser.add_argument("--size", default="1800,900")
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("chromium not found: install it (Debian: apt-get install chromium) and rerun")
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / "site"
        build_site(site)
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp}/profile", f"--window-size={args.size}",
                 "--virtual-time-budget=15000", f"--screenshot={args.out}",
                 f"http://127.0.0.1:{server.server_port}/"],
                check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=180,
            )
        finally:
            server.shutdown()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
