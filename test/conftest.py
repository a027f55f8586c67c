"""Shared fixtures: the real data in ../shared/data and isolated ROS domains."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("OV3D_SHARED_DATA", REPO.parent / "shared" / "data"))

# Keep the 2-core CI machine responsive when several test processes use torch.
os.environ.setdefault("OMP_NUM_THREADS", "2")


def _require(path: Path) -> Path:
    if not path.exists():
        message = f"real data not found at {path} (set OV3D_SHARED_DATA)"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI always has ../shared/data: missing data is a failure there
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return _require(SHARED_DATA)


@pytest.fixture(scope="session")
def scannet_npz(shared_data) -> Path:
    return _require(shared_data / "scannet" / "scene0000_00.npz")


@pytest.fixture(scope="session")
def mosd_pcds(shared_data) -> list[Path]:
    paths = sorted(_require(shared_data / "mosd").glob("test*.pcd"))
    assert paths, "no mOSD clouds found"
    return paths


@pytest.fixture(scope="session")
def rgbd_dir(shared_data) -> Path:
    return _require(shared_data / "rgbd" / "livingroom1")


def save_random_checkpoint(directory: Path, voxel_size: float = 0.02) -> Path:
    """A checkpoint of random weights, marked untrained (MiniLM text space): plumbing tests only."""
    import torch

    from ov3d_ros.core.checkpoint import CheckpointMetadata, TextSpace, save_checkpoint
    from ov3d_ros.core.network import StudentConfig, StudentNet
    from ov3d_ros.core.text import MINILM_DIM, MINILM_ID

    torch.manual_seed(0)
    model = StudentNet(StudentConfig())
    metadata = CheckpointMetadata(
        architecture=model.config, text_space=TextSpace(MINILM_ID, MINILM_DIM), trained=False, voxel_size=voxel_size
    )
    return save_checkpoint(directory, model, metadata)


@pytest.fixture(scope="session")
def random_checkpoint(tmp_path_factory) -> Path:
    return save_random_checkpoint(tmp_path_factory.mktemp("random_checkpoint") / "random")


@pytest.fixture(scope="session")
def random_checkpoint_5cm(tmp_path_factory) -> Path:
    """The same at the shipped model's 5 cm voxels (the report and calibration tests)."""
    return save_random_checkpoint(tmp_path_factory.mktemp("random_checkpoint_5cm") / "random", voxel_size=0.05)
