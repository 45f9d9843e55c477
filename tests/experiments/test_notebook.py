"""The benchmark notebook executes from a clean kernel and renders the committed results without errors."""

import pathlib

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = pathlib.Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "experiments" / "notebooks" / "benchmarks.ipynb"


def test_benchmark_notebook_runs_and_shows_every_committed_result():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    outputs = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.get("outputs", [])]
    errors = [out for out in outputs if out.output_type == "error"]
    assert not errors, errors[0]
    text = "".join(str(out.get("text", "")) + str(out.get("data", {}).get("text/plain", "")) +
                   str(out.get("data", {}).get("text/markdown", "")) + str(out.get("data", {}).get("text/html", ""))
                   for out in outputs)
    # every committed results JSON is rendered (the notebook skips only missing files)
    for result in sorted((ROOT / "experiments" / "benchmarks" / "results").glob("*.json")):
        assert result.stem in text, f"{result.name} is not shown by the notebook"
    assert "sooper_table: " in text and "| safe_cartpole | sooper |" in text  # experiments/results/ too
