"""The notebooks in ``notebooks/`` run top to bottom, as committed, offline, in a fresh kernel.

Each runs in its own temporary folder (its working folder: nothing lands in the repository, and
pytest never sees what it writes). The kernel and every process it starts import a
``sitecustomize`` that refuses any network connection other than loopback (the kernel's own
channels) and logs the attempt, so "never needs the network" is checked, not assumed. The Kaggle
notebooks read a fake NIH folder laid out as Kaggle mounts it; its tree and modification times
must be unchanged afterwards, and the download zip must be where the notebook says.

Outputs: the learner notebook is committed with its outputs (plots on GitHub), the others
stripped; ``python notebooks/refresh.py`` restores both rules.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

from chexvision.data.fake import make_nih  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NB = ROOT / "notebooks"
KAGGLE = {  # notebook folder -> (run folder, download zip) the notebook writes under WORK
    "kaggle-nih-numpy-cpu": ("nih-numpy", "nih-numpy.zip"),
    "kaggle-nih-torch-gpu": ("nih-torch", "nih-torch.zip"),
}
LEARNER = NB / "learn-backprop-side-by-side.ipynb"
METRICS = NB / "validate-metrics.ipynb"
ALL = [NB / k / f"{k}.ipynb" for k in KAGGLE] + [LEARNER, METRICS]
FAKE_IMAGES = 120  # the Kaggle notebooks' FAKE_IMAGES: the input the test lays out beforehand

NET_GUARD = '''
import os
import socket

_LOG = os.environ.get("CHEXVISION_TEST_NET_LOG")
_LOCAL = {"127.0.0.1", "::1", "localhost", "0.0.0.0"}
_connect, _connect_ex, _getaddrinfo = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo


def _refuse(what):
    if _LOG:
        with open(_LOG, "a") as f:
            f.write(f"{os.getpid()} {what}\\n")
    raise OSError(f"network access blocked in the notebook tests: {what}")


def _remote(sock, address):
    return sock.family in (socket.AF_INET, socket.AF_INET6) and str(address[0]) not in _LOCAL


def connect(self, address):
    if _remote(self, address):
        _refuse(f"connect {address}")
    return _connect(self, address)


def connect_ex(self, address):
    if _remote(self, address):
        _refuse(f"connect {address}")
    return _connect_ex(self, address)


def getaddrinfo(host, *args, **kwargs):
    if host not in _LOCAL and host is not None:
        _refuse(f"resolve {host}")
    return _getaddrinfo(host, *args, **kwargs)


socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = connect, connect_ex, getaddrinfo
'''


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """Environment for a kernel (and its subprocesses): this checkout first, network refused."""
    guard = tmp_path / "guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(NET_GUARD)
    log = tmp_path / "network.log"
    paths = [str(guard), str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(paths))
    monkeypatch.setenv("CHEXVISION_TEST_NET_LOG", str(log))
    yield log
    attempts = log.read_text() if log.exists() else ""
    assert attempts == "", f"the notebook tried to use the network:\n{attempts}"


def execute(path: Path, cwd: Path):
    """Run a notebook as committed in a fresh kernel with ``cwd`` as its folder; the executed copy."""
    nb = nbformat.read(path, as_version=4)
    t0 = time.perf_counter()
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    print(f"{path.name}: {time.perf_counter() - t0:.1f} s")
    return nb


def tree(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def outputs(nb, kind: str) -> list:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if kind in o.get("data", {})]


# -- running them ---------------------------------------------------------------------------------
@pytest.mark.parametrize("folder", list(KAGGLE))
def test_kaggle_notebook_runs_reads_only_its_input_and_leaves_the_download(folder, tmp_path, offline):
    pytest.importorskip("torch")
    run, zipname = KAGGLE[folder]
    data = tmp_path / "kaggle-input" / "data"  # where the notebook's fallback looks, as Kaggle mounts it
    make_nih(data, n=FAKE_IMAGES, seed=0)
    before = tree(tmp_path / "kaggle-input")
    nb = execute(NB / folder / f"{folder}.ipynb", tmp_path)
    assert tree(tmp_path / "kaggle-input") == before  # not one file added, changed or touched
    assert sorted(p.name for p in tmp_path.iterdir() if p.name not in ("guard", "network.log")) == [
        "kaggle-input", "kaggle-working"]  # everything written went under WORK
    archive = tmp_path / "kaggle-working" / zipname
    with zipfile.ZipFile(archive) as z:
        names = set(z.namelist())
    for f in ("best/model.npz", "best/config.json", "metrics.json", "REPORT.md", "roc.png", "history.json"):
        assert f"runs/{run}/{f}" in names
    assert not any("/last/" in n for n in names)
    assert len(outputs(nb, "image/png")) == 4  # loss curve, ROC, PR, confusion shown inline


def test_learner_notebook_runs(tmp_path, offline):
    pytest.importorskip("torch")
    nb = execute(LEARNER, tmp_path)
    assert outputs(nb, "image/png")
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "max |Value − numpy_nn|" in text and "numpy_nn.gradcheck model:  True" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["guard"]  # it writes nothing


def test_metrics_notebook_runs(tmp_path, offline):
    pytest.importorskip("sklearn")
    nb = execute(METRICS, tmp_path)
    assert len(outputs(nb, "image/png")) == 1  # ROC and PR, both libraries overlaid
    assert (tmp_path / "metrics-work" / "run" / "test_scores.npy").is_file()


def test_network_guard_refuses_and_logs(tmp_path, offline):
    """The guard the notebooks run under does block a connection (so its silence means something)."""
    r = subprocess.run([sys.executable, "-c", "import socket; socket.create_connection(('192.0.2.1', 80), 1)"],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "blocked in the notebook tests" in r.stderr
    assert "192.0.2.1" in offline.read_text()
    offline.unlink()  # expected here; the fixture checks nothing else tried


# -- how they are committed -----------------------------------------------------------------------
@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_one_parameter_cell_at_the_top(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert tagged == [code[0]], "exactly one parameter cell (papermill's 'parameters' tag), the first code cell"
    for node in ast.parse(code[0].source).body:  # only settings: assignments (and an import for them)
        assert isinstance(node, (ast.Assign, ast.AnnAssign, ast.Import, ast.ImportFrom)), ast.dump(node)[:80]
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_outputs_kept_only_in_the_learner_notebook(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    if path == LEARNER:  # committed executed, top to bottom in one fresh kernel
        assert [c.execution_count for c in code] == list(range(1, len(code) + 1))
        assert any("image/png" in o.get("data", {}) for c in code for o in c.outputs)
        assert not any(o.output_type == "error" for c in code for o in c.outputs)
    else:
        assert all(c.outputs == [] and c.execution_count is None for c in code), \
            f"{path.name} must be committed without outputs: python notebooks/refresh.py"


@pytest.mark.parametrize("folder", list(KAGGLE))
def test_kernel_metadata(folder):
    """kernel-metadata.json as the Kaggle API reads it (`kaggle kernels push -p notebooks/<folder>`)."""
    meta = json.loads((NB / folder / "kernel-metadata.json").read_text())
    assert set(meta) >= {"id", "title", "code_file", "language", "kernel_type", "is_private", "enable_gpu",
                         "enable_internet", "dataset_sources"}
    assert (NB / folder / meta["code_file"]).is_file()
    assert meta["language"] == "python" and meta["kernel_type"] == "notebook"
    assert meta["dataset_sources"] == ["nih-chest-xrays/data"]
    assert meta["enable_gpu"] is (folder == "kaggle-nih-torch-gpu")
    assert meta["enable_internet"] is True  # the notebooks clone the repository when it is not added as data
    assert isinstance(meta["is_private"], bool)
    # Kaggle derives a kernel's slug from its title: lower case, spaces -> dashes; the id must match it
    assert meta["id"].split("/")[1] == meta["title"].lower().replace(" ", "-")
    assert len(meta["title"]) >= 5
