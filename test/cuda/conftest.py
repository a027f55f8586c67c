"""The CUDA test set (marker ``cuda``): skipped without a GPU; ``scripts/gpu_check.sh`` runs it on the
lent GPU machine. ``OV3D_CUDA_TESTS_DEVICE=cpu`` (the GPU check's dry run) runs the same bodies on
the CPU, where every comparison is CPU against CPU: it proves the tests themselves run, not CUDA."""

from __future__ import annotations

import os

import pytest
import torch


@pytest.fixture(scope="session")
def device() -> torch.device:
    forced = os.environ.get("OV3D_CUDA_TESTS_DEVICE")
    if forced:
        return torch.device(forced)
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device here; scripts/gpu_check.sh runs these on the lent GPU machine")
    return torch.device("cuda")
