"""The MPEC recipe as one YAML file (see ``training/configs/mpec_default.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..data.augment import AugmentConfig
from ..data.dataset import ViewConfig
from ..data.masking import GridMaskConfig
from ..data.overseg import OversegConfig
from ..data.scene import TEXT_KINDS, SceneConfig
from ..trainer.config import OptimConfig, TrainerConfig, from_dict, load_yaml
from .model import MPECModelConfig


@dataclass
class MPECDataConfig:
    voxel_size: float = 0.02
    entities: str = "auto"  # auto | instances | overseg
    texts: tuple[str, ...] = TEXT_KINDS
    min_entity_points: int = 10
    max_points: int = 120_000
    cache_dir: str | None = None  # prepared scenes; None = <run dir>/cache
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    mask: GridMaskConfig = field(default_factory=GridMaskConfig)
    overseg: OversegConfig = field(default_factory=OversegConfig)

    def scene_config(self) -> SceneConfig:
        return SceneConfig(self.voxel_size, self.entities, tuple(self.texts), self.min_entity_points, self.overseg)

    def view_config(self, input_features: str) -> ViewConfig:
        return ViewConfig(self.max_points, input_features, self.augment, self.mask)


@dataclass
class MPECLossConfig:
    point_to_entity: float = 1.0  # weight of the cross-view point-to-entity InfoNCE
    alpha: float = 1.0  # weight of text -> entity cross-entropy
    beta: float = 6.0  # weight of entity -> text binary cross-entropy
    point_temperature: float = 0.1
    language_temperature: float = 0.07

    def __post_init__(self) -> None:
        if self.point_temperature <= 0 or self.language_temperature <= 0:
            raise ValueError("loss temperatures must be > 0")


@dataclass
class ValidationConfig:
    enabled: bool = True
    scan: str | None = None  # None: <shared data>/scannet/scene0000_00.npz
    max_voxels: int | None = None  # cap for small GPUs / CPU runs (None: the whole scan)
    train_scenes: int = 8  # entity <-> text retrieval is also measured on this many training scenes (0 = off)


@dataclass
class MPECConfig:
    seed: int = 0
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: MPECDataConfig = field(default_factory=MPECDataConfig)
    model: MPECModelConfig = field(default_factory=MPECModelConfig)
    loss: MPECLossConfig = field(default_factory=MPECLossConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)


def load_mpec_config(path: str | Path) -> MPECConfig:
    return from_dict(MPECConfig, load_yaml(path), "")
