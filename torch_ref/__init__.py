"""torch_ref: the PyTorch reference twin of numpy_nn.

Same class names, constructor arguments, ``state_dict`` keys and shapes as ``numpy_nn``; plus the
few pieces torch lacks (label-smoothed BCE, L1/L2 penalties, numpy-drawn dropout masks) and the
exact weight exchange between the tracks.
"""
