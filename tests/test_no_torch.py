"""The NumPy track works with torch absent: numpy_nn and chexvision never import torch.

Each check runs in a fresh interpreter whose ``sys.meta_path`` starts with a finder that refuses
``torch`` (and ``torch.*``) with ImportError, exactly as if torch were not installed. Every
submodule of numpy_nn is found with ``pkgutil`` and imported, so new modules are covered
without editing this file.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BLOCK_TORCH = textwrap.dedent(
    """
    import importlib, importlib.abc, pkgutil, sys
    sys.path.insert(0, {root!r})

    class BlockTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError(f"torch is blocked in this test (import of {{name}})")
            return None

    sys.meta_path.insert(0, BlockTorch())

    def torch_loaded():
        return sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
    """
)


def run_without_torch(body: str) -> subprocess.CompletedProcess:
    script = BLOCK_TORCH.format(root=str(ROOT)) + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)


def assert_ok(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"


def test_the_blocker_blocks():
    # Without this, a broken blocker would let every other test here pass vacuously.
    proc = run_without_torch(
        """
        try:
            import torch
        except ImportError as e:
            assert "blocked" in str(e), e
        else:
            raise SystemExit("torch imported despite the blocker")
        """
    )
    assert_ok(proc)


def test_numpy_nn_and_chexvision_import_without_torch():
    proc = run_without_torch(
        """
        import numpy_nn, numpy_nn.models, numpy_nn.losses, chexvision, chexvision.cli

        def fail(name):
            raise SystemExit(f"importing {name} failed")

        names = [m.name for m in pkgutil.walk_packages(numpy_nn.__path__, "numpy_nn.", onerror=fail)]
        for name in names:
            importlib.import_module(name)
        assert "numpy_nn.losses" in names and "numpy_nn.gradcheck" in names, names
        assert not torch_loaded(), torch_loaded()
        """
    )
    assert_ok(proc)


def test_cli_parser_builds_without_torch():
    # Building the parser imports every command module (train, evaluate, predict, ...): none of
    # them may import torch at module level; the torch track is imported lazily when chosen.
    proc = run_without_torch(
        """
        import chexvision.cli
        chexvision.cli.build_parser()
        assert not torch_loaded(), torch_loaded()
        """
    )
    assert_ok(proc)
