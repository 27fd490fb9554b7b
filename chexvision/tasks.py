"""What a model predicts: the task as data (output names, their count), not branches through the code.

``--task binary`` (default) has one output, ``abnormal`` (normal vs abnormal screening).
``--task findings`` has one output per finding, multi-hot targets:

* ``nih``: ChestX-ray14's 14 labels in the order CheXNet (Rajpurkar et al. 2017) reports them;
  "No Finding" is all zeros.
* ``chexpert``: its 14 observations, in the order of CheXpert's CSV columns; uncertain labels
  (−1) follow ``--uncertain`` as the CheXpert paper defines: ``ignore`` (U-Ignore: the entry is
  masked out of the loss and the metrics of that finding), ``positive`` (U-Ones), ``negative``
  (U-Zeros). A blank cell is 0.
* ``synthetic``: the generator's planted findings (``SYNTHETIC_FINDINGS``).
* ``folder``: a CSV ``path,<finding>,<finding>,...[,patient]``: every column other than path and
  patient is a finding (0/1, −1 or blank for unknown), named by its header.

Labels everywhere are an (N, K) int64 array of 1 (present), 0 (absent) and ``MASKED`` = −1
(uncertain under U-Ignore, or unknown): masked entries count neither in the loss (weight 0) nor
in that finding's metrics. The binary task is K = 1 with the output named ``abnormal``; its
labels never hold −1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import UserError

BINARY, FINDINGS = "binary", "findings"
TASKS = (BINARY, FINDINGS)
MASKED = -1

NIH_FINDINGS = (
    "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia", "Pneumothorax",
    "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia",
)
CHEXPERT_FINDINGS = (
    "No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema",
    "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other", "Fracture",
    "Support Devices",
)
SYNTHETIC_FINDINGS = ("opacity", "effusion", "cardiomegaly")
DATASET_FINDINGS = {"nih": NIH_FINDINGS, "chexpert": CHEXPERT_FINDINGS, "synthetic": SYNTHETIC_FINDINGS}


@dataclass(frozen=True)
class Task:
    """The outputs a model has: ``name`` ("binary" or "findings") and one name per output.

    Example:
        >>> Task(FINDINGS, SYNTHETIC_FINDINGS).n_outputs
        3
    """

    name: str
    outputs: tuple[str, ...]

    def __post_init__(self):
        if self.name not in TASKS:
            raise UserError(f"--task must be one of {', '.join(TASKS)}, got {self.name!r}")
        if not self.outputs or len(set(self.outputs)) != len(self.outputs):
            raise UserError(f"a task needs distinct output names, got {list(self.outputs)}")
        object.__setattr__(self, "outputs", tuple(str(o) for o in self.outputs))

    @property
    def n_outputs(self) -> int:
        return len(self.outputs)

    @property
    def is_binary(self) -> bool:
        return self.name == BINARY

    def to_dict(self) -> dict:
        return {"name": self.name, "outputs": list(self.outputs)}

    @classmethod
    def from_dict(cls, d) -> Task:
        """From ``to_dict``'s output; None (a config written before tasks existed) is binary."""
        if d is None:
            return BINARY_TASK
        if not isinstance(d, dict) or not isinstance(d.get("outputs"), list):
            raise UserError(f"bad task in the checkpoint config: {d!r}")
        return cls(d.get("name", FINDINGS), tuple(d["outputs"]))


BINARY_TASK = Task(BINARY, ("abnormal",))


def make_task(name: str, dataset: str, folder_outputs=None) -> Task:
    """The task ``--task name`` on ``--dataset dataset`` (folder: its CSV's finding columns)."""
    if name == BINARY:
        return BINARY_TASK
    if name != FINDINGS:
        raise UserError(f"--task must be one of {', '.join(TASKS)}, got {name!r}")
    if dataset in DATASET_FINDINGS:
        return Task(FINDINGS, DATASET_FINDINGS[dataset])
    if not folder_outputs:
        raise UserError("--task findings on --dataset folder needs a labels CSV with one 0/1 column per finding "
                        "(path,<finding>,<finding>,...[,patient])")
    return Task(FINDINGS, tuple(folder_outputs))


def as_label_matrix(labels) -> np.ndarray:
    """Labels as (N, K) int64: a (N,) binary vector becomes (N, 1)."""
    y = np.asarray(labels)
    return (y.reshape(-1, 1) if y.ndim == 1 else y).astype(np.int64, copy=False)


def loss_targets(y, dtype) -> tuple[np.ndarray, np.ndarray | None]:
    """Targets and the element-wise loss weight for a batch of labels (N, K) with −1 masked.

    Returns:
        target: (N, K) of ``dtype``, masked entries set to 0 (their value does not matter: weight 0).
        weight: (N, K) of ``dtype``, 0 where masked and 1 elsewhere; None when nothing is masked
            (the plain, unweighted loss: identical numbers to a loss without ``weight``).
    """
    y = np.asarray(y)
    masked = y < 0
    if not masked.any():
        return y.astype(dtype, copy=False), None
    return np.where(masked, 0, y).astype(dtype), (~masked).astype(dtype)


def auto_pos_weight(labels) -> np.ndarray:
    """Per output n_negative / n_positive over the unmasked training labels (1 where no positive).

    Shape: labels (N, K) -> (K,) float64.
    """
    y = as_label_matrix(labels)
    pos = (y == 1).sum(axis=0)
    neg = (y == 0).sum(axis=0)
    return np.where(pos > 0, neg / np.maximum(pos, 1), 1.0).astype(np.float64)


def any_positive(labels) -> np.ndarray:
    """(N,) int64: 1 where any finding is present (an "abnormal" image; masked entries count as absent)."""
    return (as_label_matrix(labels) == 1).any(axis=1).astype(np.int64)
