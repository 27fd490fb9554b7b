"""The data layer: datasets, the preprocessing cache, standardisation, augmentation, batches.

Raw images + labels -> ``open_dataset`` (a uint8 memmap cache, patient-disjoint splits) ->
``Standardizer`` (training statistics) -> ``Augmenter`` (training only) -> ``BatchLoader``
-> either track. Both tracks consume the same batches.

Datasets: ``synthetic`` (offline, default), ``folder``, ``nih`` (ChestX-ray14), ``chexpert``
(CheXpert-v1.0-small), ``rsna`` (RSNA Pneumonia, DICOM). Images are PNG/JPEG/... through Pillow
or DICOM through pydicom (the optional ``dicom`` extra). Nothing here imports torch.
"""

from .dataset import CachedDataset, add_data_arguments, data_config, open_dataset, reopen_config
from .images import MAX_PIXELS, load_image
from .loader import BatchLoader
from .transforms import Augmenter, Standardizer

__all__ = [
    "add_data_arguments", "data_config", "open_dataset", "reopen_config", "CachedDataset",
    "Standardizer", "Augmenter", "BatchLoader", "load_image", "MAX_PIXELS",
]
