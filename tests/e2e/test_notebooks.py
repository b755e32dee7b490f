"""Both notebooks execute top to bottom against a finished run of the embedded default."""
from __future__ import annotations

import nbformat
import pytest
from nbclient import NotebookClient


@pytest.mark.parametrize("name", ["dataset_tour.ipynb", "results.ipynb"])
def test_notebook_executes(finished_project, name):
    path = finished_project / "notebooks" / name
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    images = [o for cell in notebook.cells if cell.cell_type == "code"
              for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
    assert images, f"{name} drew no figure"
