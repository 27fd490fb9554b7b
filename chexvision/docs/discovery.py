"""Finding the code: public numpy_nn objects (imported), torch_ref objects and parity tests (read
with ``ast``, never imported, so generating the guide never imports torch).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
from dataclasses import dataclass, field
from pathlib import Path


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
