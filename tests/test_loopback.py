"""Every server the project starts listens on loopback only, unless the user says otherwise."""
from __future__ import annotations

import re

SERVERS = ("mlflow ui", "mlflow server", "mlflow models serve", "kedro viz run")


def test_makefile_servers_bind_127_0_0_1(project_root):
    recipes = [line.strip() for line in (project_root / "Makefile").read_text().splitlines() if line.startswith("\t")]
    servers = [line for line in recipes if any(s in line for s in SERVERS)]
    assert len(servers) >= 2  # mlflow-ui and viz at least
    for line in servers:
        assert re.search(r"--host 127\.0\.0\.1(\s|$)", line), f"not bound to loopback: {line}"
