"""Rendering the guide: one side-by-side table per item, the derivations under it, the parity links.

``generate`` is the entry point; ``Guide`` walks ``concepts.PARTS`` and records what is missing
(``missing_parity``, ``not_written``, ``found.problems``).
"""

from __future__ import annotations

import ast
import inspect
import re
import textwrap
from pathlib import Path

from ..errors import UserError
from .concepts import PARTS, Concept, Item
from .discovery import find_parity, index_parity, index_torch_ref, needs_parity, walk_numpy_nn

NO_PARITY = "no parity test yet"
NOT_WRITTEN = "not written yet"


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
            from ..compare import EXPECT

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
    root = Path(__file__).resolve().parents[2]  # chexvision/docs/guide.py -> the checkout
    if not ((root / "numpy_nn").is_dir() and (root / "parity").is_dir() and (root / "torch_ref").is_dir()):
        raise UserError(f"docs needs a source checkout (numpy_nn/, torch_ref/, parity/ next to chexvision/); "
                        f"found none at {root}")
    return root


def generate(root: Path | None = None) -> tuple[str, Guide]:
    """The guide's text (and the generator, whose ``missing_parity`` / ``not_written`` /
    ``found.problems`` list what is incomplete)."""
    guide = Guide(root or source_root())
    return guide.render(), guide
