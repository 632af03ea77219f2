import pytest
import torch

pytest.importorskip("torch")


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)   # tiny nets; robust when the CPU is shared
    yield
