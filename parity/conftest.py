import pytest

torch = pytest.importorskip("torch", reason="the parity suite compares against torch")
torch.set_num_threads(1)  # deterministic reductions; CI has 2 cores anyway
