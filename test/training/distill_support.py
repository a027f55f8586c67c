"""Shared pieces of the distillation tests: a random-init (honestly untrained) MPEC teacher, the
tiny recipe, and small labelled rooms (``mpec_synthetic``) as training scans."""

from __future__ import annotations

from pathlib import Path

import torch

from ov3d_ros.core.checkpoint import TextSpace
from ov3d_training.distill.config import DistillConfig
from ov3d_training.mpec.export import TeacherMetadata, save_teacher
from ov3d_training.mpec.model import MPECModel, MPECModelConfig
from ov3d_training.trainer.config import from_dict, load_yaml

REPO = Path(__file__).resolve().parents[2]
TINY_RECIPE = REPO / "training" / "configs" / "distill_tiny.yaml"
DEFAULT_RECIPE = REPO / "training" / "configs" / "distill_default.yaml"
VOXEL_SIZE = 0.05  # the synthetic rooms are sampled every 5 cm


def write_random_teacher(directory: Path, seed: int = 0, voxel_size: float = VOXEL_SIZE, **arch) -> Path:
    """A tiny MPEC teacher with random weights, saved as the MPEC trainer saves, marked untrained."""
    torch.manual_seed(seed)
    config = MPECModelConfig(
        **{"channels": (8, 16), "blocks": (1, 1), "decoder_blocks": 1, "adapter_hidden": 32, **arch}
    )
    model = MPECModel(config, 384)
    with torch.no_grad():  # BatchNorm running stats other than (0, 1), as a trained net has
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
    metadata = TeacherMetadata(
        config, TextSpace("minilm-l6-v2", 384, ("{}",)), voxel_size, config.input_features, trained=False
    )
    return save_teacher(directory, model, metadata)


def tiny_config(**sections) -> DistillConfig:
    """The tiny recipe with whole sections (or keys of them) replaced: ``tiny_config(trainer={"steps": 2})``."""
    raw = load_yaml(TINY_RECIPE)
    for name, values in sections.items():
        if isinstance(values, dict) and isinstance(raw.get(name), dict):
            raw[name] = {**raw[name], **values}
        else:
            raw[name] = values
    return from_dict(DistillConfig, raw)
