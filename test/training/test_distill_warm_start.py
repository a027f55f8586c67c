"""``init`` in a distillation recipe: the student starts from a trained checkpoint's weights."""

from __future__ import annotations

import pytest
import torch

from ov3d_ros.core.checkpoint import CheckpointMetadata, TextSpace, save_checkpoint
from ov3d_ros.core.network import StudentNet
from ov3d_ros.core.text import MINILM_DIM, MINILM_ID
from ov3d_training.distill.config import StudentArchConfig
from ov3d_training.distill.task import warm_start
from ov3d_training.trainer.config import ConfigError

SMALL = StudentArchConfig(channels=(8, 16), blocks=(1, 1), decoder_blocks=1, head_hidden=16, semantic_rank=8)


def _saved(tmp_path, arch: StudentArchConfig, seed: int):
    torch.manual_seed(seed)
    net = StudentNet(arch.build(MINILM_DIM))
    meta = CheckpointMetadata(
        architecture=net.config, text_space=TextSpace(MINILM_ID, MINILM_DIM), trained=True, voxel_size=0.05
    )
    return net, save_checkpoint(tmp_path / f"student_{seed}", net, meta)


def test_warm_start_copies_every_tensor(tmp_path):
    trained, path = _saved(tmp_path, SMALL, seed=1)
    torch.manual_seed(2)
    fresh = StudentNet(SMALL.build(MINILM_DIM))
    assert any(not torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), trained.state_dict().values()))
    warm_start(fresh, path)
    for name, tensor in trained.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], tensor), name


def test_warm_start_refuses_another_architecture_and_a_missing_checkpoint(tmp_path):
    _, path = _saved(tmp_path, SMALL, seed=1)
    other = StudentNet(
        StudentArchConfig(channels=(8, 32), blocks=(1, 1), decoder_blocks=1, head_hidden=16, semantic_rank=8).build(
            MINILM_DIM
        )
    )
    with pytest.raises(ConfigError, match="does not match"):
        warm_start(other, path)
    with pytest.raises(ConfigError, match="init"):
        warm_start(other, tmp_path / "nowhere")
