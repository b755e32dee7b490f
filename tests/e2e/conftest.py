from __future__ import annotations

from pathlib import Path

import pytest

from project_copy import BIN, copy_project, git_commit_all, run, shrink_params


@pytest.fixture(scope="session")
def finished_project(tmp_path_factory) -> Path:
    """A tiny project copy, committed to its own git repository like a fresh clone, after one full
    `kedro run` (all four pipelines)."""
    project = copy_project(tmp_path_factory.mktemp("project"))
    shrink_params(project)
    git_commit_all(project, "clone")
    run([str(BIN / "kedro"), "run"], cwd=project)
    return project
