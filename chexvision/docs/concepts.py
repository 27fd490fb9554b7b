"""What the guide covers, in reading order: the parts, their concepts, and the objects each names.

``PARTS`` is the guide's table of contents. A concept names numpy_nn objects (``items``), claims
whole numpy_nn modules (``modules``), or lists application files to read (``files``); the
generator in ``guide`` places every public class, and what no concept places goes to a final
section.
"""

from __future__ import annotations

from dataclasses import dataclass


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
                "suite.", files=("chexvision/metrics.py", "chexvision/metrics_checks.py", "chexvision/thresholds.py",
                                  "chexvision/bootstrap.py", "chexvision/report.py", "chexvision/plots.py")),
    ]),
    ("Inference", [
        Concept("Evaluation and prediction", "The threshold comes from validation only; `predict` runs on the "
                "NumPy track without torch.", files=("chexvision/evaluate.py", "chexvision/predict.py")),
    ]),
    ("Looking inside: explanations", [
        Concept("Hooks", "torch's module hooks, by the same names: a forward hook sees a layer's output, a full "
                "backward hook its `grad_output` and `grad_input`. In numpy_nn `__call__` runs the forward hooks "
                "and the hooked `backward` runs the backward hooks; in torch autograd does.",
                (Item(("RemovableHandle",), ("torch.utils.hooks.RemovableHandle",)),)),
        Concept("Saliency, gradient × input, SmoothGrad, Grad-CAM", "A saliency map is the backward pass carried "
                "one step further, to the image: the same hand-written backward, seeded with a one-hot upstream "
                "gradient on the explained logit, with the first layer computing dL/dx (training skips it). "
                "Grad-CAM reads a layer's activation and its gradient through the hooks. torch gets the same maps "
                "from autograd and its own hooks; `parity/test_explain.py` checks them equal (float64) and checks "
                "our torch Grad-CAM against captum's `LayerGradCam`.",
                (Item(("Saliency",)), Item(("InputXGradient",)), Item(("SmoothGrad",)), Item(("GradCAM",)),
                 Item(("upsample_bilinear",), ("torch.nn.functional.interpolate",))),
                modules=("numpy_nn.explain",), functions=True, files=("chexvision/explain.py",)),
    ]),
]
