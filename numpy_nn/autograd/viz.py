"""Pictures of the engine: a graph as Graphviz DOT text, a loss curve as PNG.

``to_dot`` needs no graphviz package: it returns the text, which ``dot -Tsvg graph.dot`` (or any
online Graphviz viewer) renders. ``plot_losses`` draws with matplotlib's Agg canvas directly, so
it never touches pyplot's global backend or needs a display.
"""

from __future__ import annotations

import os
from typing import Sequence

from .engine import Value, topological_order


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(root: Value, rankdir: str = "LR", precision: int = 4) -> str:
    """The graph below ``root`` as Graphviz DOT text.

    Every ``Value`` is a box ``v{i}`` showing its label (if any), ``data`` and ``grad``; every
    operation is an ellipse ``v{i}_op`` showing its symbol (``+``, ``*``, ``tanh``, ``**-1``...),
    with edges child -> op -> result. Nodes are numbered in topological order (children first,
    ``root`` last), so the text is deterministic. Iterative, like ``backward``: deep graphs work.

    Args:
        root: the output Value.
        rankdir: Graphviz layout direction (``"LR"``: inputs on the left).
        precision: significant digits shown for data and grad.

    Example:
        >>> print(to_dot(Value(2.0, label="a") * 3))   # doctest: +ELLIPSIS
        digraph autograd {
        ...
    """
    order = topological_order(root)
    index = {id(v): i for i, v in enumerate(order)}
    lines = ["digraph autograd {", f"  rankdir={rankdir};", "  node [fontname=monospace];"]
    for i, v in enumerate(order):
        name = f"{v.label} | " if v.label else ""
        text = f"{name}data {v.data:.{precision}g} | grad {v.grad:.{precision}g}"
        lines.append(f"  v{i} [shape=box, label={_quote(text)}];")
        if v._op:
            lines.append(f"  v{i}_op [shape=ellipse, label={_quote(v._op)}];")
            lines.append(f"  v{i}_op -> v{i};")
            for child in v._children:
                lines.append(f"  v{index[id(child)]} -> v{i}_op;")
    lines.append("}")
    return "\n".join(lines) + "\n"


def write_dot(root: Value, path: str | os.PathLike, **kwargs) -> str:
    """Write ``to_dot(root)`` to ``path`` and return the path."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(to_dot(root, **kwargs))
    return os.fspath(path)


def plot_losses(losses: Sequence[float], path: str | os.PathLike, title: str = "training loss") -> str:
    """Save the loss curve (log-scale y) as a PNG at ``path`` and return the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(range(len(losses)), losses, color="tab:blue")
    if min(losses) > 0:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return os.fspath(path)
