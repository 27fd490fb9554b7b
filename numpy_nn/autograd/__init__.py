"""A scalar reverse-mode autograd engine for teaching (the micrograd idea, done right).

``Value`` records its parents and each local derivative; ``backward()`` applies the chain rule in
reverse topological order (iteratively, accumulating over shared sub-expressions). On top:
``Neuron`` / ``Layer`` / ``MLP``, ``mse_loss`` / ``bce_with_logits_loss``, ``fit``; ``to_dot``
draws a graph as Graphviz text. ``python -m numpy_nn.autograd`` walks through it all.

Twin: ``torch.autograd`` (checked against it, and against numpy_nn's hand-written backward, in
``parity/test_gradient_triangle.py``). Never imports torch.
"""

from .engine import Value, topological_order
from .nn import MLP, Layer, Neuron, bce_with_logits_loss, classic_example, fit, from_numpy_nn, mse_loss
from .viz import plot_losses, to_dot

__all__ = [
    "Value", "topological_order",
    "Neuron", "Layer", "MLP", "from_numpy_nn", "mse_loss", "bce_with_logits_loss", "fit", "classic_example",
    "to_dot", "plot_losses",
]
