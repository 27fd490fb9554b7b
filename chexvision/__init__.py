"""CheXVision: screen chest X-rays (normal = "No Finding" vs abnormal) with either track.

The NumPy track (``numpy_nn``) and the torch track (``torch_ref``) share every other step: data,
splits, standardisation, augmentation, metrics, threshold and artifacts. Importing this package
never imports torch; the torch track is imported lazily when asked for.
"""

__version__ = "0.1.0"
