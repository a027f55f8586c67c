"""Shared helpers for the simulator tests (test_sim_*.py)."""

from __future__ import annotations

import os
from functools import lru_cache

import pytest

from ov3d_training.sim.catalog import furniture_dir

APT_HINT = "apt-get install -y sweethome3d-furniture"


def require_furniture() -> None:
    """Skip (fail on CI) when the Sweet Home 3D furniture package is not installed."""
    if not list(furniture_dir().glob("*.sh3f")):
        message = f"Sweet Home 3D furniture not found in {furniture_dir()} ({APT_HINT})"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@lru_cache(maxsize=1)
def _library():
    from ov3d_training.sim.library import ModelLibrary

    # The first build processes ~380 models into the cache (about 40 s on one core), later ones read it.
    return ModelLibrary.build()


def library():
    require_furniture()
    return _library()
