"""colab_train.ipynb: committed without outputs, and runs top to bottom outside Colab on the CPU."""

from __future__ import annotations

import json
import sys

import nbformat
import pytest
import torch
from nbclient import NotebookClient

from conftest import ROOT

NOTEBOOK = ROOT / "colab_train.ipynb"


def read_notebook() -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOK, as_version=4)


def parameters_cell(nb: nbformat.NotebookNode) -> int:
    tagged = [i for i, cell in enumerate(nb.cells) if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    return tagged[0]


def test_committed_notebook_is_clean_and_linked_from_the_readme():
    nb = read_notebook()
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert len(code) >= 10
    for cell in code:
        assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]
    assert nb.metadata["kernelspec"]["name"] == "python3" and nb.metadata.get("accelerator") == "GPU"
    params = nb.cells[parameters_cell(nb)].source
    for name in ("DATA", "EPOCHS", "N_SPLITS", "PRECISION", "OUTPUT_DIR", "HUB_REPO_ID"):
        assert f"\n{name} = " in f"\n{params}", name
    badge = "https://colab.research.google.com/github/"
    readme = (ROOT / "README.md").read_text()
    link = readme[readme.index(badge):].split(")", 1)[0]
    assert link.endswith("/blob/main/colab_train.ipynb")
    assert link in nb.cells[0].source  # the notebook's own badge opens the same file


def _texts(nb: nbformat.NotebookNode) -> str:
    """Everything the cells printed or displayed as text."""
    parts = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            parts.append(output.get("text", ""))
            parts += [v for k, v in output.get("data", {}).items() if k.startswith("text/")]
    return "\n".join(parts)


@pytest.mark.slow  # real processes: runs in `make test-slow` (CI runs both)
def test_notebook_runs_top_to_bottom_on_the_cpu(tmp_path, hub, monkeypatch):
    nb = read_notebook()
    out = tmp_path / "out"
    overrides = nbformat.v4.new_code_cell("\n".join([
        "EPOCHS = 2", "N_SPLITS = 2", "BOOTSTRAP = 50", f"OUTPUT_DIR = {str(out)!r}", 'RUN_NAME = "nb"',
        'PRECISION = "16-mixed"',  # a GPU setting: on a CPU-only machine it must train in 32-true, not fail
        'HUB_REPO_ID = "colab-user/netad-colab"',
    ]))
    nb.cells.insert(parameters_cell(nb) + 1, overrides)
    monkeypatch.setenv("HF_TOKEN", hub.token)  # the kernel inherits it: the upload cell takes it from there
    before = {p.name for p in ROOT.iterdir()}
    published = ROOT / "checkpoints" / "best_model.ckpt"
    published_mtime = published.stat().st_mtime_ns if published.exists() else None

    # the kernel is this interpreter's ("python3" resolves to sys.executable); cells run in the project folder
    NotebookClient(nb, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(ROOT)}}).execute()

    text = _texts(nb)
    assert f"at {sys.executable}" in text and "Not in Colab" in text
    if not torch.cuda.is_available():
        assert "16-mixed needs a GPU and none was found" in text and "precision 32-true" in text
    results = json.loads((out / "checkpoints" / "nb" / "cv_results.json").read_text())
    assert len(results["folds"]) == 2
    cv_table = [o for cell in nb.cells for o in cell.get("outputs", []) if "text/html" in o.get("data", {})]
    assert len(cv_table) == 1 and f"{results['summary']['auroc']['mean']:.3f}" in cv_table[0]["data"]["text/html"]
    assert results["verdict"]["message"] in text
    assert (out / "test_results.csv").is_file()

    figures = sorted((out / "reports" / "nb").glob("*.png"))
    shown = [o for cell in nb.cells for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(figures) >= 7 and len(shown) == len(figures)
    assert "no inline TensorBoard" in text and list((out / "logs" / "tensorboard").rglob("events.out.*"))

    files = hub.repos["colab-user/netad-colab"]["files"]
    assert files["model.safetensors"] == (out / "exports" / "nb" / "model.safetensors").read_bytes()
    assert "README.md" in files and "Uploaded to" in text
    assert hub.token not in json.dumps([cell.get("outputs", []) for cell in nb.cells])  # nor in any other output

    # everything went under OUTPUT_DIR: nothing new in the project folder, its published model untouched
    assert {p.name for p in ROOT.iterdir()} == before
    assert (published.stat().st_mtime_ns if published.exists() else None) == published_mtime
