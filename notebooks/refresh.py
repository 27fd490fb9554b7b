"""Keep the notebooks' outputs as the project keeps them: ``python notebooks/refresh.py``.

- ``learn-backprop-side-by-side.ipynb`` is committed WITH its outputs, so that its numbers and
  plots show when it is read on GitHub: this script runs it top to bottom in a fresh kernel (in a
  temporary folder) and writes the outputs back into the file.
- Every other notebook is committed WITHOUT outputs (they are Kaggle recipes whose outputs would be
  the small local stand-in data, not Kaggle's): this script strips them.

``tests/test_notebooks.py`` checks both rules and runs every notebook as committed.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
WITH_OUTPUTS = ("learn-backprop-side-by-side.ipynb",)


def notebooks() -> list[Path]:
    return sorted(p for p in HERE.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def strip(nb) -> None:
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        cell.metadata.pop("execution", None)


def main() -> int:
    for path in notebooks():
        nb = nbformat.read(path, as_version=4)
        if path.name in WITH_OUTPUTS:
            with tempfile.TemporaryDirectory() as tmp:
                NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": tmp}}).execute()
            for cell in nb.cells:
                cell.metadata.pop("execution", None)  # timestamps: noise in every diff
            print(f"executed {path.relative_to(HERE.parent)}")
        else:
            strip(nb)
            print(f"stripped {path.relative_to(HERE.parent)}")
        nbformat.write(nb, path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
