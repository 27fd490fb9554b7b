"""The two training engines behind ``--track``: ``numpy_track`` (numpy_nn) and ``torch_track`` (torch_ref).

Both modules define one class, ``Engine``, with the same methods, name for name:

=========================================  =========================================================
``Engine(spec, dtype, device, lockstep)``  the model, built from a spec (see ``model_spec``)
``build_model(seed)``                      fresh weights, a function of ``seed`` only
``model_state()``                          ``{torch name: np.ndarray}`` (what ``model.npz`` stores)
``load_model_state(state, source)``        load weights; a mismatch is one ``UserError`` line
``setup_training(cfg, steps, pos_w)``      criterion, optimizer (decay on weights only), scheduler
``begin_epoch(seed, epoch)``               train mode; dropout masks seeded by (seed, epoch)
``train_step(x, y)``                       one mini-batch: ``(data_loss, reg_loss)`` as floats; y (N,) or
                                           (N, K) with -1 masked (loss weight 0 there)
``scheduler_step()``                       advance the learning-rate schedule (no-op without one)
``lr``                                     the current learning rate of the first parameter group
``logits(batches)``                        eval mode, every ``(x, y)`` batch: (N,) float64 logits for one
                                           output, (N, K) for K (``--task findings``)
``training_state()``                       ``(json_tree, arrays)``: optimizer, scheduler, RNG states
``load_training_state(tree, arrays)``      the inverse, to resume
=========================================  =========================================================

Everything else (data, batches, augmentation, metrics, checkpoints) is shared code, so the tracks
differ only where the engines differ. ``torch_track`` is imported only when asked for: the NumPy
track never imports torch.
"""

from __future__ import annotations

import importlib

import numpy as np

from ..errors import UserError

# Independent random streams derived from (seed, stream, epoch) with NumPy's SeedSequence, so
# each epoch's batch order, augmentation and dropout masks depend on nothing but seed and epoch.
STREAM_DROPOUT = 1
STREAM_TORCH = 2


def epoch_seed_sequence(seed: int, stream: int, epoch: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([int(seed), int(stream), int(epoch)])


def reseed_generator(generator: np.random.Generator, seed: int, stream: int, epoch: int) -> None:
    """Put ``generator`` (shared by every Dropout of a model) in the state for (seed, stream, epoch)."""
    generator.bit_generator.state = np.random.PCG64(epoch_seed_sequence(seed, stream, epoch)).state


def model_spec(model: str, image_size: int, hidden=(), dropout: float = 0.0, channels=(16, 32, 64),
               out_features: int = 1) -> dict:
    """The JSON description a checkpoint keeps, from which either track rebuilds the model.

    ``out_features``: the task's number of outputs (1 for binary, K findings).
    """
    if model == "mlp":
        return {"kind": "mlp", "in_features": int(image_size) ** 2, "hidden": [int(h) for h in hidden],
                "out_features": int(out_features), "dropout": float(dropout), "image_size": int(image_size)}
    if model == "cnn":
        return {"kind": "cnn", "in_channels": 1, "out_features": int(out_features), "channels": [int(c) for c in channels],
                "dropout": float(dropout), "image_size": int(image_size)}
    if model == "densenet121":
        from ..densenet import densenet_spec

        return densenet_spec(image_size, out_features, dropout)
    raise UserError(f"unknown model {model!r}; choose mlp, cnn or densenet121")


def layout(spec: dict) -> str:
    """Batch layout for ``BatchLoader``: flat (N, H·W) for the MLP, (N, 1, H, W) for the CNN and DenseNet."""
    return "flat" if spec["kind"] == "mlp" else "nchw"


def fit_standardizer(spec: dict, images, idx):
    """The input scaling a model kind reads: per-pixel statistics of the training images, or, for
    DenseNet-121, the fixed x / 255 its ImageNet normalisation starts from (``chexvision.densenet``)."""
    if spec["kind"] == "densenet121":
        from ..densenet import pixel_standardizer

        return pixel_standardizer(spec["image_size"])
    from ..data import Standardizer

    return Standardizer.fit(images, idx)


def describe(spec: dict) -> str:
    if spec["kind"] == "mlp":
        widths = [spec["in_features"], *spec["hidden"], spec["out_features"]]
        return f"mlp {'-'.join(map(str, widths))} dropout={spec['dropout']}"
    if spec["kind"] == "densenet121":
        return f"densenet121 drop_rate={spec['drop_rate']} (gray repeated to RGB, ImageNet normalisation)"
    return f"cnn channels={'-'.join(map(str, spec['channels']))} dropout={spec['dropout']}"


def load_track(name: str):
    """The engine module for ``--track name`` (imported on first use)."""
    if name == "numpy":
        return importlib.import_module("chexvision.tracks.numpy_track")
    if name == "torch":
        try:
            return importlib.import_module("chexvision.tracks.torch_track")
        except ModuleNotFoundError as e:
            if e.name == "torch":
                raise UserError("--track torch needs PyTorch (pip install torch); --track numpy needs nothing") from None
            raise
    raise UserError(f"unknown track {name!r}; choose numpy or torch")


def make_engine(track: str, spec: dict, dtype: str = "float32", device: str = "cpu", lockstep: bool = False):
    return load_track(track).Engine(spec, dtype=dtype, device=device, lockstep=lockstep)
