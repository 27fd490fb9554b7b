"""``python -m chexvision docs``: generate ``docs/side_by_side.md``, the side-by-side reading guide.

The guide is built from the source and never edited by hand. For each concept (Linear,
activations, losses, Dropout, BatchNorm, Conv2d, pooling, each optimizer, the schedulers, the
models, one training step) it puts the NumPy implementation next to its PyTorch counterpart: the
``torch_ref`` code where the reference has its own (``MLP``, ``train_step``, ...), otherwise the
``torch`` call it mirrors; it pulls each backward's derivation out of the code, and links the
parity test that proves the two equal (found by scanning ``parity/test_*.py`` for the class name).

How the pieces are found:

* ``numpy_nn`` is imported and walked (``pkgutil``); a public object is one whose name has no
  leading underscore and whose ``__module__`` is the module walked. Its code comes from
  ``inspect.getsource``. Every public class lands in the guide: the ``CONCEPTS`` table below
  places the ones it names (or the modules it claims), the rest go to a final section.
* ``torch_ref`` and ``parity`` are read with ``ast``, never imported, so the guide does not
  depend on the installed torch and generating it never imports torch.
* Output depends only on the source files: no timestamps, no dict-order or filesystem-order
  accidents. ``--check`` regenerates in memory and exits 1 when the file on disk differs.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UserError

HELP = "generate docs/side_by_side.md, the NumPy-next-to-PyTorch reading guide (--check: exit 1 if stale)"

GUIDE = Path("docs") / "side_by_side.md"
NO_PARITY = "no parity test yet"
NOT_WRITTEN = "not written yet"


@dataclass(frozen=True)
class Item:
    """One side-by-side table: ``numpy`` objects on the left, ``torch`` ones on the right.

    Names are looked up by suffix (``Linear`` or ``layers.Linear``). A torch name is either a
    ``torch_ref`` object (``torch_ref:NumpyMaskDropout``) or a torch API (``torch.nn.Dropout``).
    ``torch=None`` resolves the twin automatically (see ``_twins``).
    """

    numpy: tuple[str, ...]
    torch: tuple[str, ...] | None = None
    snippet: str = ""  # hand-written torch code, when the counterpart is a usage pattern, not one call


@dataclass(frozen=True)
class Concept:
    title: str
    intro: str
    items: tuple[Item, ...] = ()
    modules: tuple[str, ...] = ()  # numpy_nn modules whose public classes this concept claims
    functions: bool = False  # ... and their public functions too
    files: tuple[str, ...] = ()  # application files to read (glob patterns, relative to the root)


def _items(*names: str) -> tuple[Item, ...]:
    return tuple(Item((n,)) for n in names)


VALUE_SNIPPET = """\
# torch.Tensor with requires_grad=True: autograd records the graph as you compute
a = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
b = torch.tensor(-3.0, dtype=torch.float64, requires_grad=True)
c = (a * b + b**2).tanh()
c.backward()  # a.grad, b.grad: the numbers Value.backward() computes"""

# The reading order for learners: library, gradient checking, optimizers, data, training,
# metrics, inference.
PARTS: list[tuple[str, list[Concept]]] = [
    ("The library: layers, losses, models", [
        Concept("The Module contract", "Every layer caches what its backward needs in `forward`; `backward` takes "
                "dL/dy, adds into each parameter's `.grad` and returns dL/dx. torch builds the same graph "
                "implicitly and autograd walks it.", _items("Parameter", "Module", "Sequential", "Identity")),
        Concept("Weight initialisation", "Same names, formulas and fan computations as `torch.nn.init`.",
                _items("kaiming_uniform_", "kaiming_normal_", "xavier_uniform_", "zeros_")),
        Concept("Linear", "The workhorse: one matrix product forward, two backward.", _items("Linear")),
        Concept("Activations", "Element-wise (Softmax: along a dim); each derivative reads off the cached output "
                "or mask. Note the overflow-free sigmoid.",
                (Item(("ReLU",)), Item(("LeakyReLU",)), Item(("sigmoid",), ("torch.sigmoid",)), Item(("Sigmoid",)),
                 Item(("Tanh",)), Item(("Softmax",)))),
        Concept("Dropout", "Inverted dropout. torch draws masks from its own RNG, which NumPy cannot reproduce, "
                "so for parity and lockstep runs `torch_ref` swaps in a dropout that draws with numpy_nn's "
                "`dropout_mask`.",
                (Item(("dropout_mask", "layers.Dropout"),
                      ("torch.nn.Dropout", "torch_ref:NumpyMaskDropout", "torch_ref:use_numpy_masks")),)),
        Concept("Flatten", "A reshape forward, the inverse reshape backward.", _items("Flatten")),
        Concept("Losses", "Losses return a float; `backward()` returns d loss / d logits. BCE is computed on "
                "logits (log-sum-exp form), never as log(sigmoid).",
                _items("BCEWithLogitsLoss", "MSELoss", "CrossEntropyLoss"), modules=("numpy_nn.losses",),
                functions=True),
        Concept("Regularisation", "L1/L2 penalties added to the data loss, and their gradients.",
                modules=("numpy_nn.regularization",), functions=True),
        Concept("BatchNorm", "Batch statistics in training, running statistics (torch's momentum and unbiased "
                "variance) in eval; the backward through the batch mean and variance.",
                _items("BatchNorm1d", "BatchNorm2d")),
        Concept("Conv2d", "NCHW convolution as a matrix product over unfolded patches (im2col); the backward "
                "folds gradients back (col2im).", _items("Conv2d")),
        Concept("Pooling", "Max pooling routes the gradient to the arg-max; average pooling spreads it evenly.",
                _items("MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d")),
        Concept("Models", "The two networks the application trains. Same arguments, same `state_dict` keys and "
                "shapes in both tracks, so weights move between them with no renaming.",
                _items("models.MLP", "ResidualBlock", "CNN"), modules=("numpy_nn.models", "numpy_nn.blocks")),
        Concept("Weights on disk and across tracks", "One checkpoint format for both tracks: `.npz` keyed by "
                "torch's dotted names; `torch_ref.exchange` converts containers, never layouts.",
                (Item(("save", "load"), ("torch_ref:to_numpy_state", "torch_ref:to_torch_state",
                                         "torch_ref:numpy_to_torch", "torch_ref:torch_to_numpy")),),
                modules=("numpy_nn.serialization",)),
    ]),
    ("Checking gradients", [
        Concept("gradcheck", "Central differences in float64 with a random upstream gradient: the one tool every "
                "layer and loss is checked with (the tests in `tests/`), before the parity suite compares with "
                "torch.", _items("gradcheck"), modules=("numpy_nn.gradcheck",)),
        Concept("A scalar autograd engine", "The micrograd idea: what torch autograd does, one scalar at a time. "
                "Read it after the hand-written layers: it derives the same gradients mechanically.",
                (Item(("Value",), ("torch.Tensor",), VALUE_SNIPPET),), modules=("numpy_nn.autograd",)),
    ]),
    ("Optimizers and schedulers", [
        Concept("Optimizers", "torch-style parameter groups, torch's state names (`exp_avg`, `exp_avg_sq`, "
                "`square_avg`, `momentum_buffer`, `step`), and torch's exact order of operations.",
                _items("SGD", "RMSprop", "Adam", "AdamW"), modules=("numpy_nn.optim",)),
        Concept("Learning-rate schedulers", "Closed forms and chaining as torch: warm-up (`LinearLR`) then cosine "
                "decay, joined by `SequentialLR`.",
                _items("StepLR", "LinearLR", "CosineAnnealingLR", "SequentialLR"),
                modules=("numpy_nn.optim.lr_scheduler",)),
    ]),
    ("Data", [
        Concept("Data pipeline", "Shared by both tracks: raw images and labels → preprocessing cache → "
                "patient-disjoint split → standardisation (train statistics) → augmentation → batches.",
                files=("chexvision/data/*.py",)),
    ]),
    ("Training", [
        Concept("One training step", "Forward, loss (+ penalty), backward, optimizer step: written out by hand in "
                "NumPy, and in torch with autograd doing the backward.",
                _items("train_step"), modules=("numpy_nn.training",), functions=True),
        Concept("The training loop", "One loop serves both tracks; only the engine differs.",
                files=("chexvision/config.py", "chexvision/tracks/*.py", "chexvision/train.py", "chexvision/checkpoint.py")),
        Concept("Lockstep: watching the tracks agree", "`python -m chexvision compare` runs both engines step for "
                "step from one seed (same initial weights, batches, augmentation and dropout masks) and records how "
                "far every tensor drifts apart: `compare.json`, `divergence.png`, `losses.png`, `timing.png` and a "
                "verdict table. Try `--dtype float32`, `--optimizer sgd`, `--model cnn`, or "
                "`--perturb layers.0.weight:1e-6`.", files=("chexvision/compare.py",)),
    ]),
    ("Metrics", [
        Concept("Metrics and reports", "Checked against scikit-learn and brute-force references in the parity "
                "suite.", files=("chexvision/metrics.py", "chexvision/report.py", "chexvision/plots.py")),
    ]),
    ("Inference", [
        Concept("Evaluation and prediction", "The threshold comes from validation only; `predict` runs on the "
                "NumPy track without torch.", files=("chexvision/evaluate.py", "chexvision/predict.py")),
    ]),
]


# -- discovery -------------------------------------------------------------------------------------
@dataclass
class Found:
    """Public numpy_nn objects by qualified name, and what could not be imported."""

    objects: dict[str, object] = field(default_factory=dict)  # "numpy_nn.layers.Linear" -> class
    problems: list[str] = field(default_factory=list)


def walk_numpy_nn() -> Found:
    """Import every module of numpy_nn and list the public classes and functions it defines."""
    import numpy_nn

    found = Found()
    names = sorted(["numpy_nn"] + [m.name for m in pkgutil.walk_packages(numpy_nn.__path__, "numpy_nn.")])
    for modname in names:
        try:
            mod = importlib.import_module(modname)
        except Exception as e:  # a module another author is still writing must not stop the guide
            found.problems.append(f"cannot import {modname}: {type(e).__name__}: {e}")
            continue
        for name, obj in vars(mod).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != modname:
                continue
            if inspect.isclass(obj) and issubclass(obj, BaseException):
                continue  # error types are documented where they are raised
            if inspect.isclass(obj) or inspect.isfunction(obj):
                found.objects[f"{modname}.{name}"] = obj
    return found


def needs_parity(qualname: str, obj) -> bool:
    """Module subclasses, optimizers, schedulers and losses must each have a parity test."""
    from numpy_nn.module import Module

    if not inspect.isclass(obj):
        return False
    return (issubclass(obj, Module) or qualname.startswith(("numpy_nn.optim.", "numpy_nn.losses."))
            or obj.__name__.endswith("Loss"))


def _segment(source: str, node: ast.AST) -> tuple[str, int, int]:
    start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    lines = source.splitlines()[start - 1 : node.end_lineno]
    return "\n".join(lines), start, node.end_lineno


def index_torch_ref(root: Path) -> dict[str, tuple[str, str, int, int]]:
    """``torch_ref.<module>.<Name>`` -> (relative path, code, first line, last line), read with ast."""
    out = {}
    for path in sorted((root / "torch_ref").rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        modname = rel[:-3].replace("/", ".").removesuffix(".__init__")
        source = path.read_text(encoding="utf-8")
        for node in ast.parse(source).body:
            if isinstance(node, (ast.ClassDef, ast.FunctionDef)) and not node.name.startswith("_"):
                code, a, b = _segment(source, node)
                out[f"{modname}.{node.name}"] = (rel, code, a, b)
    return out


@dataclass(frozen=True)
class ParityTest:
    path: str  # relative, e.g. parity/test_layers.py
    name: str  # test_linear or TestAdam::test_step
    direct: str  # the test's own code (decorators included)
    expanded: str  # plus the module-level names it uses (case tables, helpers), two levels deep
    refs: frozenset = frozenset()  # numpy_nn objects the expanded code names through its imports


def index_parity(root: Path) -> list[ParityTest]:
    """Every test function (and ``Test*`` method) of ``parity/test_*.py``, read with ast."""
    tests = []
    for path in sorted((root / "parity").rglob("test_*.py")):
        tests += _parity_file(path.relative_to(root).as_posix(), path.read_text(encoding="utf-8"))
    return tests


def resolve_numpy_nn(dotted: str) -> str | None:
    """``numpy_nn.layers.Linear`` or a re-export such as ``numpy_nn.Linear`` -> the qualified name
    of the public class or function it denotes (``None`` if it is none)."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):  # the longest importable module prefix, then attributes
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr, None)
        if ((inspect.isclass(obj) or inspect.isfunction(obj)) and obj.__module__.startswith("numpy_nn")
                and obj.__qualname__ == obj.__name__):  # module-level objects only, not methods
            return f"{obj.__module__}.{obj.__name__}"
        return None
    return None


def _imports(tree: ast.Module) -> dict[str, str]:
    """Local name -> the dotted numpy_nn name it was imported as (module or object)."""
    out = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "numpy_nn":
            out.update({a.asname or a.name: f"{node.module}.{a.name}" for a in node.names})
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "numpy_nn":
                    out[a.asname or a.name.split(".")[0]] = a.name if a.asname else "numpy_nn"
    return out


def _references(nodes, imports: dict[str, str]) -> frozenset:
    """numpy_nn objects named in ``nodes``: ``Linear``, ``nnp.Linear``, ``np_models.MLP``..."""
    refs = set()
    for node in nodes:
        for n in ast.walk(node):  # every Name and Attribute, so ``a.b.c`` is tried as a, a.b and a.b.c
            chain = []
            while isinstance(n, ast.Attribute):
                chain.append(n.attr)
                n = n.value
            if isinstance(n, ast.Name) and n.id in imports:
                q = resolve_numpy_nn(".".join([imports[n.id], *reversed(chain)]))
                if q:
                    refs.add(q)
    return frozenset(refs)


def _parity_file(rel: str, source: str) -> list[ParityTest]:
    tree = ast.parse(source)
    imports = _imports(tree)
    top = {}  # module-level name -> the statement defining it (case tables, helpers, fixtures)
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            for t in node.targets if isinstance(node, ast.Assign) else [node.target]:
                top.update({n.id: node for n in ast.walk(t) if isinstance(n, ast.Name)})
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            top[node.name] = node

    def expand(node, depth: int, seen: set) -> list:
        if depth == 0:
            return [node]
        used = sorted({n.id for n in ast.walk(node) if isinstance(n, ast.Name)} - seen)
        seen |= set(used)
        return [node] + [m for u in used if u in top for m in expand(top[u], depth - 1, seen)]

    tests = []
    for node in tree.body:
        subs = [(node, node.name)] if isinstance(node, ast.FunctionDef) else []
        if isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            subs = [(f, f"{node.name}::{f.name}") for f in node.body if isinstance(f, ast.FunctionDef)]
        for fn, label in subs:
            if fn.name.startswith("test"):
                nodes = expand(fn, 2, {fn.name})
                text = "\n".join(_segment(source, n)[0] for n in nodes)
                tests.append(ParityTest(rel, label, _segment(source, fn)[0], text, _references(nodes, imports)))
    return tests


def _squash(s: str) -> str:
    return re.sub(r"[^a-z0-9]", "", s.lower())


def find_parity(qualname: str, tests: list[ParityTest], by_word: bool = True) -> list[ParityTest]:
    """Parity tests that use the object ``qualname``: through their imports, or (``by_word``, for a
    name no other numpy_nn object shares) as a whole word anywhere in their code, e.g. a case table
    of ``("SGD", {...})``. Best first: a test named after it (the shortest such name, e.g.
    ``test_linear`` before ``test_linear_default_init...``), then tests in the file named after
    its module (``numpy_nn/optim/sgd.py`` -> ``test_optim.py``), then tests named as comparisons
    (``..._match_torch``, then ``..._like_torch``), then tests whose own code names it."""
    name = qualname.rsplit(".", 1)[-1]
    homes = [_squash(part) for part in qualname.split(".")[1:-1]]  # numpy_nn.optim.sgd.SGD -> optim, sgd
    word = re.compile(rf"(?<![\w]){re.escape(name)}(?![\w])")
    ranked = []
    for i, t in enumerate(tests):
        if not (qualname in t.refs or (by_word and word.search(t.expanded))):
            continue
        test_name = t.name.rsplit("::", 1)[-1]
        named = _squash(name) in _squash(test_name)
        stem = _squash(Path(t.path).stem)
        score = (0 if named else 1, len(test_name) if named else 0,
                 0 if _squash(name) in stem or any(h in stem for h in homes) else 1,
                 0 if re.search(r"match|parity|equal", test_name) else 1 if "torch" in test_name else 2,
                 0 if word.search(t.direct) else 1, i)
        ranked.append((score, t))
    return [t for _, t in sorted(ranked, key=lambda st: st[0])]


# -- rendering -------------------------------------------------------------------------------------
def _fence(code: str) -> str:
    ticks = "`" * max(3, 1 + max((len(m) for m in re.findall(r"`+", code)), default=0))
    return f"{ticks}python\n{code.rstrip()}\n{ticks}"


def _link(rel: str, a: int | None = None, b: int | None = None) -> str:
    anchor = f"#L{a}-L{b}" if a else ""
    return f"[{rel}](../{rel}{anchor})"


def _signature_args(obj, drop=("self", "dtype", "generator")) -> str:
    fn = obj.__init__ if inspect.isclass(obj) else obj
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return ""
    out = []
    for p in params:
        if p.name in drop or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        out.append(p.name if p.default is p.empty else f"{p.name}={p.default!r}")
    return ", ".join(out)


def api_snippet(api: str, obj) -> str:
    """How the torch API that ``obj`` mirrors is called (arguments from numpy_nn's own signature,
    which follows torch's by design)."""
    from numpy_nn.module import Module

    args = _signature_args(obj)
    if inspect.isfunction(obj):
        return f"# {api}: the torch function {obj.__name__} mirrors\nout = {api}({args})"
    if ".lr_scheduler." in api:
        return (f"# {api}: torch's scheduler; same arguments and closed form\n"
                f"scheduler = {api}({args})\noptimizer.step()\nscheduler.step()          # once per epoch (or step)")
    if api.startswith("torch.optim."):
        return (f"# {api}: torch's optimizer; same arguments, state names and update order\n"
                f"optimizer = {api}({args})\noptimizer.zero_grad()\nloss.backward()\noptimizer.step()")
    if obj.__name__.endswith("Loss"):
        return (f"# {api}: torch's loss; autograd derives d loss / d logits\n"
                f"criterion = {api}({args})\nloss = criterion(logits, target)\n"
                "loss.backward()           # logits.grad = d loss / d logits")
    if issubclass(obj, Module):
        return (f"# {api}: torch's layer; autograd derives the backward\n"
                f"module = {api}({args})\ny = module(x)             # forward\n"
                "y.backward(grad_output)   # backward: fills x.grad and every parameter's .grad")
    return f"# {api}: the torch class {obj.__name__} mirrors\nobj = {api}({args})"


DERIVED = {"backward": "Backward derivation", "step": "Update rule"}


def defining_class(obj, method: str):
    """The first class in ``obj``'s MRO (numpy_nn's own, not the bare ``Module``) defining ``method``."""
    from numpy_nn.module import Module

    for cls in obj.__mro__ if inspect.isclass(obj) else ():
        if cls is not Module and cls.__module__.startswith("numpy_nn") and inspect.isfunction(vars(cls).get(method)):
            return cls
    return None


def derivation(obj, method: str) -> str:
    """The comment lines that open ``method`` (``backward``: the hand derivation; ``step``: the
    update rule), before its first statement and after its docstring; for ``backward``, failing
    that, the body's first comment block."""
    cls = defining_class(obj, method)
    if cls is None:
        return ""
    fn = vars(cls)[method]
    source = textwrap.dedent(inspect.getsource(fn))
    node = ast.parse(source).body[0]
    body = node.body
    first, last = body[0].lineno, body[-1].end_lineno
    if isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
        first = body[1].lineno if len(body) > 1 else last + 1  # after the docstring
        start = body[0].end_lineno
    else:
        start = node.lineno
    lines = source.splitlines()
    # between the header (or docstring) and the first statement; failing that, the body's first
    # comment block
    windows = [lines[start:first - 1]] + ([lines[start:last]] if method == "backward" else [])
    for window in windows:
        out = []
        for line in window:
            s = line.strip()
            if s.startswith("#"):
                out.append(s)
            elif s and out:
                break
        if out:
            return "\n".join(out)
    return ""


class Guide:
    def __init__(self, root: Path):
        self.root = root
        self.found = walk_numpy_nn()
        self.torch_ref = index_torch_ref(root)
        self.tests = index_parity(root)
        self.placed: set[str] = set()
        self.missing_parity: list[str] = []
        self.not_written: list[str] = []
        self.bases_shown: set = set()
        self.derivations_shown: set = set()
        # objects a concept names explicitly are never taken by another concept's module claim
        self.named = {self.numpy(n) for _, cs in PARTS for c in cs for it in c.items for n in it.numpy}

    # lookups
    def numpy(self, name: str) -> str | None:
        hits = [q for q in self.found.objects if q == name or q.endswith("." + name)]
        if len(hits) > 1:  # e.g. the autograd engine's own Module/MLP: the shallowest module wins
            depth = min(q.count(".") for q in hits)
            hits = [q for q in hits if q.count(".") == depth]
        return hits[0] if len(hits) == 1 else None

    def torch_twins(self, qualname: str) -> list[str]:
        """Same name in torch_ref, else the docstring's ``Twin: torch...``, else torch's namespace
        by kind (torch.nn / torch.optim / torch.optim.lr_scheduler / torch.nn.init)."""
        from numpy_nn.module import Module

        obj, name = self.found.objects[qualname], qualname.rsplit(".", 1)[1]
        twin_module = "torch_ref" + qualname[len("numpy_nn"):]
        if twin_module in self.torch_ref:  # same file name, same object name
            return ["torch_ref:" + twin_module]
        same = sorted(k for k in self.torch_ref if k.rsplit(".", 1)[1] == name)
        if len(same) == 1 and sum(q.rsplit(".", 1)[1] == name for q in self.found.objects) == 1:
            return ["torch_ref:" + same[0]]
        m = re.search(r"Twins?:\s*``(torch(?:_ref)?\.[\w.]+)", inspect.getdoc(obj) or "")
        if m:
            twin = m.group(1)
            return ["torch_ref:" + twin if twin.startswith("torch_ref.") else twin]
        m = re.search(rf"``(torch\.[\w.]*\.{name})``", inspect.getdoc(inspect.getmodule(obj)) or "")
        if m:  # the module docstring names the twin
            return [m.group(1)]
        if qualname.startswith("numpy_nn.optim.lr_scheduler."):
            return [f"torch.optim.lr_scheduler.{name}"]
        if qualname.startswith("numpy_nn.optim."):
            return [f"torch.optim.{name}"]
        if qualname.startswith("numpy_nn.init."):
            return [f"torch.nn.init.{name}"]
        if inspect.isclass(obj) and issubclass(obj, Module):
            return [f"torch.nn.{name}"]
        return []

    def torch_code(self, ref: str, qualname: str | None) -> tuple[str, str]:
        if ref.startswith("torch_ref:"):
            key = ref.split(":", 1)[1]
            hits = [k for k in self.torch_ref if k == key or k.endswith("." + key)]
            if not hits:
                self.not_written.append(ref)
                return f"`{key}` ({NOT_WRITTEN})", ""
            rel, code, a, b = self.torch_ref[hits[0]]
            return f"`{hits[0]}` in {_link(rel, a, b)}", code
        obj = self.found.objects[qualname] if qualname else None
        return f"`{ref}`", api_snippet(ref, obj) if obj is not None else f"{ref}(...)"

    # rendering
    def table(self, item: Item) -> list[str]:
        quals = []
        for n in item.numpy:
            q = self.numpy(n)
            if q is None:
                self.not_written.append(n)
            else:
                quals.append(q)
        if not quals:
            return [f"*`{', '.join(item.numpy)}`: {NOT_WRITTEN}.*", ""]
        self.placed.update(quals)
        refs = list(item.torch) if item.torch is not None else [r for q in quals for r in self.torch_twins(q)]
        left_heads, left_code = [], []
        for q in quals:
            obj = self.found.objects[q]
            for base in self.private_bases(obj):
                head, code = self.source(base)
                left_heads.append(head.replace("` in", "` (shared base) in", 1))
                left_code.append(code)
            head, code = self.source(obj)
            left_heads.append(head)
            left_code.append(code)
        right_heads, right_code = [], []
        for r in refs:
            head, code = self.torch_code(r, quals[-1])
            right_heads.append(head)
            if code:
                right_code.append(code)
        if item.snippet:  # a usage pattern replaces the generated calls
            right_code = [item.snippet]
        if not right_code:  # numpy_nn only (a helper with no torch twin): one plain code block
            out = [f"**numpy_nn only**: {', '.join(left_heads)}", "", _fence("\n\n".join(left_code)), ""]
            return out + self.notes(quals)
        # GitHub renders Markdown inside an HTML cell when blank lines surround it: two fenced,
        # highlighted code blocks side by side.
        out = [f"**NumPy**: {', '.join(left_heads)}  ", f"**PyTorch**: {', '.join(right_heads)}", "",
               "<table>", "<tr><th>NumPy</th><th>PyTorch</th></tr>",
               '<tr><td valign="top">', "", _fence("\n\n".join(left_code)), "",
               '</td><td valign="top">', "", _fence("\n\n".join(right_code)), "",
               "</td></tr>", "</table>", ""]
        return out + self.notes(quals)

    def source(self, obj) -> tuple[str, str]:
        """(``qualified.name`` in [file](link#lines), the code) of a numpy_nn class or function."""
        lines, a = inspect.getsourcelines(obj)
        rel = Path(inspect.getsourcefile(obj)).resolve().relative_to(self.root).as_posix()
        return f"`{obj.__module__}.{obj.__name__}` in {_link(rel, a, a + len(lines) - 1)}", "".join(lines).rstrip()

    def notes(self, quals: list[str]) -> list[str]:
        out = []
        for q in quals:
            obj = self.found.objects[q]
            for method, label in DERIVED.items():
                d = derivation(obj, method)
                owner = defining_class(obj, method)
                if d and (owner, method) not in self.derivations_shown:
                    self.derivations_shown.add((owner, method))
                    out += [f"{label} (`{owner.__name__}.{method}`):", "", _fence(d), ""]
            out += [self.parity_line(q, obj), ""]
        return out

    def private_bases(self, obj) -> list:
        """numpy_nn's private base classes of ``obj`` (e.g. ``_BatchNorm``, where the forward and
        backward of BatchNorm1d/2d live), each shown once, before its first subclass."""
        if not inspect.isclass(obj):
            return []
        new = [b for b in reversed(obj.__mro__[1:]) if b.__name__.startswith("_")
               and b.__module__.startswith("numpy_nn") and b not in self.bases_shown]
        self.bases_shown.update(new)
        return new

    def parity_line(self, qualname: str, obj) -> str:
        name = obj.__name__
        shared = sum(q.rsplit(".", 1)[1] == name for q in self.found.objects) > 1
        hits = find_parity(qualname, self.tests, by_word=not shared)
        if not hits and inspect.isclass(obj):
            subs = sorted(c.__name__ for q, c in self.found.objects.items()
                          if inspect.isclass(c) and c is not obj and issubclass(c, obj))
            if subs:  # a base class is proven through its subclasses' parity tests
                shown = ", ".join(f"`{s}`" for s in subs[:6]) + (f" and {len(subs) - 6} more" if len(subs) > 6 else "")
                return f"Parity for `{name}`: through its subclasses ({shown})."
        if not hits:
            if needs_parity(qualname, obj):
                self.missing_parity.append(qualname)
                return f"Parity for `{name}`: **{NO_PARITY}**."
            return f"Parity for `{name}`: no parity test names it (not required for this kind of object)."
        best = hits[0]
        more = f" (and {len(hits) - 1} more)" if len(hits) > 1 else ""
        return f"Parity for `{name}`: {_link(best.path)} :: `{best.name}`{more}."

    def files(self, patterns: tuple[str, ...]) -> list[str]:
        out = []
        for pat in patterns:
            for path in sorted(self.root.glob(pat)):
                if path.name == "__main__.py":
                    continue
                rel = path.relative_to(self.root).as_posix()
                doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
                first = doc.strip().split("\n\n")[0].replace("\n", " ")
                out.append(f"- {_link(rel)}: {first}" if first else f"- {_link(rel)}")
        return out + [""] if out else []

    def concept(self, c: Concept) -> list[str]:
        out = [f"### {c.title}", ""]
        if c.intro:
            out += [c.intro, ""]
        if c.title.startswith("Lockstep"):
            from .compare import EXPECT

            out += [EXPECT, ""]
        for item in c.items:
            out += self.table(item)
        claimed = sorted((q for q, o in self.found.objects.items()
                          if any(q.startswith(m + ".") for m in c.modules) and (c.functions or inspect.isclass(o))
                          and q not in self.placed and q not in self.named and not self._claimed_elsewhere(q, c)),
                         key=lambda q: (self.found.objects[q].__module__, inspect.getsourcelines(
                             self.found.objects[q])[1]))
        for q in claimed:
            out += self.table(Item((q,)))
        return out + self.files(c.files)

    def _claimed_elsewhere(self, q: str, c: Concept) -> bool:
        """True when a more specific module claim in another concept owns ``q``."""
        mine = max((len(m) for m in c.modules if q == m or q.startswith(m + ".")), default=0)
        return any(len(m) > mine and q.startswith(m + ".") for _, cs in PARTS for o in cs if o is not c
                   for m in o.modules)

    def render(self) -> str:
        body, toc = [], []
        for i, (part, concepts) in enumerate(PARTS, 1):
            body += [f"## {i}. {part}", ""]
            toc.append(f"{i}. **{part}**: " + ", ".join(f"[{c.title}](#{_anchor(c.title)})" for c in concepts))
            for c in concepts:
                body += self.concept(c)
        rest = sorted(q for q, o in self.found.objects.items() if inspect.isclass(o) and q not in self.placed)
        if rest:
            n = len(PARTS) + 1
            body += [f"## {n}. Other public classes", "", "Public classes of `numpy_nn` no concept above places.", ""]
            toc.append(f"{n}. **Other public classes**")
            for q in rest:
                body += [f"### {q.rsplit('.', 1)[1]}", ""] + self.table(Item((q,)))
        head = [
            "<!-- GENERATED by `python -m chexvision docs` from the source. Do not edit by hand: edit the code and "
            "regenerate; `python -m chexvision docs --check` fails when this file is stale. -->",
            "",
            "# numpy_nn and PyTorch, side by side",
            "",
            "Each concept below puts the hand-written NumPy code (left) next to its PyTorch counterpart (right): "
            "the `torch_ref` code where the reference has its own, otherwise the torch call it mirrors, whose "
            "backward torch's autograd derives. Under each table: the backward's derivation as written in the "
            "source, and the parity test that proves the two tracks equal.",
            "",
            "## Reading order",
            "",
            *toc,
            "",
        ]
        problems = self.found.problems + [f"{NO_PARITY}: {q}" for q in self.missing_parity]
        problems += [f"{NOT_WRITTEN}: {n}" for n in self.not_written]
        if problems:
            head += ["## Gaps", ""] + [f"- {p}" for p in problems] + [""]
        return "\n".join(head + body).rstrip() + "\n"


def _anchor(title: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to dashes."""
    return re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")


def source_root() -> Path:
    root = Path(__file__).resolve().parents[1]
    if not ((root / "numpy_nn").is_dir() and (root / "parity").is_dir() and (root / "torch_ref").is_dir()):
        raise UserError(f"docs needs a source checkout (numpy_nn/, torch_ref/, parity/ next to chexvision/); "
                        f"found none at {root}")
    return root


def generate(root: Path | None = None) -> tuple[str, Guide]:
    """The guide's text (and the generator, whose ``missing_parity`` / ``not_written`` /
    ``found.problems`` list what is incomplete)."""
    guide = Guide(root or source_root())
    return guide.render(), guide


def add_arguments(p) -> None:
    p.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 when the file on disk differs from what the source generates")
    p.add_argument("--out", metavar="PATH", default=None, help=f"where to write (default: {GUIDE} in the checkout)")


def run(args) -> int:
    root = source_root()
    out = Path(args.out) if args.out else root / GUIDE
    text, guide = generate(root)
    gaps = guide.found.problems + [f"{NO_PARITY}: {q}" for q in guide.missing_parity]
    gaps += [f"{NOT_WRITTEN}: {n}" for n in guide.not_written]
    for g in gaps:
        print(f"chexvision docs: warning: {g}", file=sys.stderr)
    if args.check:
        current = out.read_text(encoding="utf-8") if out.is_file() else None
        if current != text:
            why = "missing" if current is None else "stale"
            print(f"chexvision docs: {out} is {why}; regenerate it with `python -m chexvision docs`", file=sys.stderr)
            return 1
        print(f"{out} is up to date")
        return 0
    from numpy_nn.serialization import atomic_write

    atomic_write(out, lambda f: f.write(text.encode("utf-8")))
    print(f"wrote {out} ({len(guide.placed)} objects, {len(gaps)} gap(s))")
    return 0
