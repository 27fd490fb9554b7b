"""Walk-through of the scalar engine: ``python -m numpy_nn.autograd [--out DIR]``.

1. one tanh neuron, forward and backward, gradients checked by hand;
2. the classic example (3 -> 4 -> 4 -> 1 tanh MLP, four samples) trained with SGD: the loss goes down;
3. a gradient check: the engine's parameter gradients against numpy_nn's hand-written backward
   (same weights) and against central differences.

With ``--out DIR`` it writes ``neuron.dot`` (the neuron's graph), ``loss_curve.png`` and
``loss_graph.dot`` (the graph of the classic example's loss at the last step). Needs no torch.
Exit status 0 when the gradient check passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

import numpy as np

from ..layers import Linear, Tanh
from ..losses import MSELoss
from ..module import Sequential
from ..rng import manual_seed
from .engine import Value, graph_size
from .nn import CLASSIC_XS, CLASSIC_YS, classic_example, from_numpy_nn, mse_loss
from .viz import plot_losses, write_dot


def neuron_demo(out_dir: str | None) -> None:
    print("1. One neuron: o = tanh(x1·w1 + x2·w2 + b)")
    x1, x2 = Value(2.0, "x1"), Value(0.0, "x2")
    w1, w2 = Value(-3.0, "w1"), Value(1.0, "w2")
    b = Value(6.881373587019543, "b")  # chosen so that n = atanh(1/√2) and do/dn = 1 − o² = 0.5
    n = x1 * w1 + x2 * w2 + b
    n.label = "n"
    o = n.tanh()
    o.label = "o"
    o.backward()
    print(f"   o = {o.data:.4f};  do/dn = 1 - o^2 = {n.grad:.4f}")
    for v in (x1, w1, x2, w2, b):
        print(f"   d o / d {v.label:2s} = {v.grad: .4f}")
    # by hand: do/dw1 = x1 · (1 − o²) = 1.0, do/dx1 = w1 · (1 − o²) = −1.5
    assert math.isclose(w1.grad, 1.0, rel_tol=1e-12) and math.isclose(x1.grad, -1.5, rel_tol=1e-12)
    if out_dir:
        print(f"   graph -> {write_dot(o, os.path.join(out_dir, 'neuron.dot'))}")


def training_demo(out_dir: str | None, steps: int, lr: float, seed: int) -> list[float]:
    print(f"\n2. The classic example: MLP(3, [4, 4, 1]), tanh, MSE, SGD lr={lr}, {steps} steps")

    def report(step: int, loss: float) -> None:
        if step % max(1, steps // 10) == 0 or step == steps - 1:
            print(f"   step {step:4d}  loss {loss:.3e}")

    model, losses = classic_example(steps=steps, lr=lr, seed=seed, callback=report)
    print(f"   loss decreased from {losses[0]:.4f} to {losses[-1]:.3e}" if losses[-1] < losses[0]
          else f"   loss did not decrease: {losses[0]:.4f} -> {losses[-1]:.4f}")
    preds = [model(x) for x in CLASSIC_XS]
    print("   predictions " + "  ".join(f"{p.data: .4f}" for p in preds) + "   targets " + "  ".join(f"{y:g}" for y in CLASSIC_YS))
    print(f"   {len(model.parameters())} parameters")
    if out_dir:
        print(f"   loss curve -> {plot_losses(losses, os.path.join(out_dir, 'loss_curve.png'), 'classic example: MSE')}")
        loss = mse_loss(preds, CLASSIC_YS)
        loss.backward()
        path = write_dot(loss, os.path.join(out_dir, "loss_graph.dot"))
        print(f"   loss graph ({graph_size(loss)} nodes) -> {path}")
    return losses


def gradient_check(seed: int, eps: float = 1e-6) -> bool:
    print("\n3. Gradient check (float64): the same weights in numpy_nn and in the scalar engine")
    manual_seed(seed)
    net = Sequential(Linear(3, 4, dtype=np.float64), Tanh(), Linear(4, 4, dtype=np.float64), Tanh(),
                     Linear(4, 1, dtype=np.float64))
    mlp = from_numpy_nn(net)
    x = np.array(CLASSIC_XS)  # (N, 3)
    y = np.array(CLASSIC_YS)[:, None]  # (N, 1)

    # numpy_nn: forward, hand-written backward
    crit = MSELoss()
    loss_np = crit(net(x), y)
    net.zero_grad()
    net.backward(crit.backward())
    grads_np = {name: p.grad for name, p in net.named_parameters()}

    # scalar engine
    def engine_loss() -> Value:
        return mse_loss([mlp(row) for row in CLASSIC_XS], CLASSIC_YS)

    loss = engine_loss()
    mlp.zero_grad()
    loss.backward()
    grads_ad = mlp.grad_dict()
    scale = max(np.abs(g).max() for g in grads_np.values())
    diff_np = max(np.abs(grads_ad[k] - grads_np[k]).max() for k in grads_np)
    print(f"   loss: engine {loss.data:.12f}  numpy_nn {loss_np:.12f}")
    print(f"   max |engine - numpy_nn backward| = {diff_np:.2e}   (largest gradient {scale:.2e})")

    # central differences: (L(p + eps) − L(p − eps)) / 2 eps, one parameter at a time
    worst = 0.0
    for p in mlp.parameters():
        original = p.data
        p.data = original + eps
        up = engine_loss().data
        p.data = original - eps
        down = engine_loss().data
        p.data = original
        worst = max(worst, abs((up - down) / (2 * eps) - p.grad))
    print(f"   max |engine - central differences| = {worst:.2e}   (eps = {eps:g})")
    ok = diff_np <= 1e-12 * max(1.0, scale) and worst <= 1e-7 * max(1.0, scale)
    print("   gradient check passed" if ok else "   GRADIENT CHECK FAILED")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m numpy_nn.autograd", description=__doc__.replace("``", ""),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # the docstring, no markup
    parser.add_argument("--out", metavar="DIR", help="write neuron.dot, loss_graph.dot and loss_curve.png here")
    parser.add_argument("--steps", type=int, default=200, help="SGD steps of the classic example (default 200)")
    parser.add_argument("--lr", type=float, default=0.1, help="learning rate (default 0.1)")
    parser.add_argument("--seed", type=int, default=0, help="init seed (default 0)")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps must be at least 1, got {args.steps}")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
    neuron_demo(args.out)
    training_demo(args.out, args.steps, args.lr, args.seed)
    ok = gradient_check(args.seed)
    if not args.out:
        print("\n(pass --out DIR to write the graphs as Graphviz DOT and the loss curve as PNG)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
