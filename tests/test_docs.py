"""The side-by-side guide: generated from the source, complete, current, and torch-free to build."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import subprocess
import sys

import pytest

import numpy_nn
from chexvision import docs
from chexvision.cli import main
from chexvision.docs import discovery
from numpy_nn.module import Module


@pytest.fixture(scope="module")
def generated():
    return docs.generate()


def public_classes() -> list[str]:
    """Module subclasses, optimizers, schedulers and losses of numpy_nn, found independently of
    the generator: every module walked, every class defined there."""
    names = []
    for info in pkgutil.walk_packages(numpy_nn.__path__, "numpy_nn."):
        mod = importlib.import_module(info.name)
        for name, obj in vars(mod).items():
            if name.startswith("_") or not inspect.isclass(obj) or obj.__module__ != info.name:
                continue
            if (issubclass(obj, Module) or info.name.startswith(("numpy_nn.optim", "numpy_nn.losses"))
                    or name.endswith("Loss")) and not issubclass(obj, BaseException):
                names.append(f"{info.name}.{name}")
    return names


def test_public_class_list_is_not_trivial():
    classes = public_classes()
    for expected in ("numpy_nn.layers.Linear", "numpy_nn.models.MLP", "numpy_nn.layers.Dropout"):
        assert expected in classes


def test_guide_covers_every_public_class(generated):
    text, _ = generated
    missing = [q for q in public_classes() if f"`{q}`" not in text]
    assert not missing, f"classes missing from the guide: {missing}"


def test_every_class_has_a_parity_test_and_every_concept_exists(generated):
    text, guide = generated
    assert guide.found.problems == []
    assert guide.missing_parity == [], f"{docs.NO_PARITY}: {guide.missing_parity}"
    assert guide.not_written == [], f"named in docs.CONCEPTS but not in the source: {guide.not_written}"
    assert docs.NO_PARITY not in text and docs.NOT_WRITTEN not in text


def test_guide_on_disk_is_current(generated):
    text, guide = generated
    path = guide.root / docs.GUIDE
    assert path.is_file(), "docs/side_by_side.md is missing: run `python -m chexvision docs`"
    assert path.read_text(encoding="utf-8") == text, "docs/side_by_side.md is stale: run `python -m chexvision docs`"


def test_check_flags_a_stale_or_missing_file(tmp_path, capsys):
    out = tmp_path / "guide.md"
    assert main(["docs", "--check", "--out", str(out)]) == 1  # missing
    assert main(["docs", "--out", str(out)]) == 0
    assert main(["docs", "--check", "--out", str(out)]) == 0
    out.write_text(out.read_text(encoding="utf-8").replace("dX = dY W", "dX = dY Wᵀ"), encoding="utf-8")
    assert main(["docs", "--check", "--out", str(out)]) == 1
    assert "stale" in capsys.readouterr().err


def test_generation_is_deterministic_and_never_imports_torch():
    code = ("import sys; from chexvision.docs import generate; a = generate()[0]; b = generate()[0]; "
            "assert a == b; assert 'torch' not in sys.modules, 'generating the guide imported torch'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_sections_pair_numpy_code_with_torch_and_derivation(generated):
    text, _ = generated
    linear = text[text.index("### Linear"):text.index("### Activations")]
    assert "class Linear(Module):" in linear and "torch.nn.Linear(in_features, out_features, bias=True)" in linear
    assert "Backward derivation (`Linear.backward`)" in linear and "# dW = dYᵀ X" in linear
    assert "Parity for `Linear`: [parity/" in linear
    mlp = text[text.index("`numpy_nn.models.MLP`"):]
    assert "`torch_ref.models.MLP` in [torch_ref/models.py](../torch_ref/models.py#L" in mlp


PARITY_SOURCE = '''
import numpy_nn
from numpy_nn import layers as L
from numpy_nn.models import MLP as NumpyMLP
CASES = [("AdamW", {}), ("SGD", {"momentum": 0.9})]

def helper():
    return numpy_nn.Tanh()

@pytest.mark.parametrize("name,kwargs", CASES)
def test_steps_match_torch(name, kwargs):
    getattr(numpy_nn.optim, name)

def test_adam():
    pass

def test_tanh_via_helper():
    helper()

def test_mlp_uses_an_alias():
    NumpyMLP(4, (3,))

class TestLinear:
    def test_forward(self):
        L.Linear(2, 3)

    def test_linear(self):
        L.Linear(2, 3).forward
'''


def q(dotted: str) -> str:
    return discovery.resolve_numpy_nn(dotted)


def test_parity_finder_resolves_imports_ranks_and_respects_word_boundaries():
    tests = discovery._parity_file("parity/test_x.py", PARITY_SOURCE)
    names = lambda qualname, **kw: [t.name for t in discovery.find_parity(qualname, tests, **kw)]  # noqa: E731
    assert q("numpy_nn.Linear") == "numpy_nn.layers.Linear"  # a re-export resolves to its definition
    assert names(q("numpy_nn.optim.AdamW")) == ["test_steps_match_torch"]  # a string in a case table
    assert names(q("numpy_nn.optim.AdamW"), by_word=False) == []  # ... is no import reference
    assert names(q("numpy_nn.optim.Adam")) == []  # test_adam never uses Adam; AdamW is another word
    assert names(q("numpy_nn.Tanh"), by_word=False) == ["test_tanh_via_helper"]  # through a helper
    assert names("numpy_nn.models.MLP", by_word=False) == ["test_mlp_uses_an_alias"]
    assert names("numpy_nn.layers.Linear") == ["TestLinear::test_linear", "TestLinear::test_forward"]
    assert names("numpy_nn.conv.Conv2d") == []


def test_every_torch_counterpart_named_in_the_guide_exists(generated):
    torch = pytest.importorskip("torch")
    text, _ = generated
    heads = [line for line in text.splitlines() if line.startswith("**PyTorch**: ")]
    apis = sorted({m for line in heads for m in re.findall(r"`(torch\.[\w.]+)`", line)})
    assert "torch.nn.Linear" in apis and "torch.optim.Adam" in apis
    missing = []
    for api in apis:
        obj = torch
        for part in api.split(".")[1:]:
            obj = getattr(obj, part, None)
        if obj is None:
            missing.append(api)
    assert not missing, f"the guide names torch APIs that do not exist: {missing}"
