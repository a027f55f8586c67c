"""The distillation recipe as one YAML file (see ``training/configs/distill_default.yaml``).

The dataclass defaults are the default recipe as written; the YAML file spells it out and is what
``ov3d-train distill`` reads (a test keeps its student section equal to the inference default). Sections: ``trainer`` and ``optim`` (the shared loop), ``data`` (views), ``student``
(architecture), ``pairs`` (anchor / positive / negative mining, see :mod:`.pairs`), ``loss`` and
``validation``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ov3d_ros.core.features import DEFAULT_FEATURES, feature_set
from ov3d_ros.core.ggp import GGPConfig
from ov3d_ros.core.network import AFFINITY_DIM, StudentConfig, UNetConfig

from ..data.augment import AugmentConfig
from ..trainer.config import OptimConfig, TrainerConfig, from_dict, load_yaml

_DEFAULT_GGP = GGPConfig()
TEACHER_SPACES = ("contrast", "text")


@dataclass
class DistillDataConfig:
    """How a prepared scan becomes one training view.

    voxel_size: None = the teacher's (the teacher must see the voxels it was trained on; any
                other value is refused).
    max_points: scans larger than this are ball-cropped around a random point (bounds memory);
                the student still runs on every voxel of the crop.
    augment:    per-view augmentation; ``null`` turns it off (views are then deterministic and
                the teacher's features can be cached, see ``teacher_cache``).
    """

    voxel_size: float | None = None
    max_points: int = 250_000
    cache_dir: str | None = None  # prepared scans; None = <run dir>/cache
    augment: AugmentConfig | None = field(default_factory=AugmentConfig)
    normals_k: int = 16  # neighbours for normal estimation (only for feature sets with normals)
    min_voxels: int = 64  # smaller scans are refused at preparation (nothing to contrast)

    def __post_init__(self) -> None:
        if self.voxel_size is not None and not self.voxel_size > 0:
            raise ValueError(f"data.voxel_size must be > 0 or null, got {self.voxel_size}")
        if self.max_points < 1 or self.min_voxels < 2:
            raise ValueError("data.max_points must be >= 1 and data.min_voxels >= 2")


@dataclass
class StudentArchConfig:
    """The student's architecture. ``None`` = the inference core's default
    (:class:`ov3d_ros.core.network.StudentConfig`), resolved when a run starts and written into the
    run's ``config.yaml`` (so a resumed run never changes architecture under a code update).

    The semantic head's width is not set here: it is the teacher's text dimension.
    ``semantic_rank``: the semantic head's linear bottleneck; 0 = none (full rank).
    """

    input_features: str = DEFAULT_FEATURES
    channels: tuple[int, ...] | None = None
    blocks: tuple[int, ...] | None = None
    decoder_blocks: int | None = None
    head_hidden: int | None = None
    semantic_rank: int | None = None

    def __post_init__(self) -> None:
        feature_set(self.input_features)  # raises ValueError for an unknown name
        if self.semantic_rank is not None and self.semantic_rank < 0:
            raise ValueError(f"student.semantic_rank must be >= 0 (0 = full rank) or null, got {self.semantic_rank}")

    def resolved(self) -> StudentArchConfig:
        """A copy with every ``None`` replaced by the inference default."""
        default = StudentConfig()
        pick = lambda value, fallback: fallback if value is None else value
        return StudentArchConfig(
            input_features=self.input_features,
            channels=tuple(pick(self.channels, default.backbone.channels)),
            blocks=tuple(pick(self.blocks, default.backbone.blocks)),
            decoder_blocks=int(pick(self.decoder_blocks, default.backbone.decoder_blocks)),
            head_hidden=int(pick(self.head_hidden, default.head_hidden)),
            semantic_rank=int(pick(self.semantic_rank, default.semantic_rank or 0)),
        )

    def build(self, semantic_dim: int) -> StudentConfig:
        r = self.resolved()
        backbone = UNetConfig(
            in_channels=feature_set(r.input_features).channels,
            channels=r.channels,
            blocks=r.blocks,
            decoder_blocks=r.decoder_blocks,
        )
        return StudentConfig(
            backbone=backbone,
            semantic_dim=int(semantic_dim),
            affinity_dim=AFFINITY_DIM,
            head_hidden=r.head_hidden,
            semantic_rank=r.semantic_rank or None,
        )


@dataclass
class PairConfig:
    """Contrastive pairs per scan (module doc of :mod:`.pairs` for the why of each choice).

    anchors:                 anchors per scan (GeoPurify: 4096).
    positive_candidates:     the positive is the most teacher-similar of the anchor's this many
                             nearest voxels (the GGP neighbourhood size of the inference default).
    hard_negative_neighbors: spatial neighbourhood searched for hard negatives (GeoPurify: 96).
    hard_negatives:          least teacher-similar neighbours taken as negatives (GeoPurify: 15).
    global_negatives:        least teacher-similar voxels of a random pool (GeoPurify: 48, taken
                             over the whole scan).
    negative_pool:           size of that random pool per scan (bounds the cost to A x pool).
    margin:                  a negative counts only if its teacher similarity to the anchor is
                             below the positive's minus this margin (0 = GeoPurify's rule).
    teacher_space:           "contrast" (the teacher's point-entity contrast features, default)
                             or "text" (its VL-adapter output) -- where similarity is measured.
    """

    anchors: int = 4096
    positive_candidates: int = 16
    hard_negative_neighbors: int = 96
    hard_negatives: int = 15
    global_negatives: int = 48
    negative_pool: int = 4096
    margin: float = 0.1
    teacher_space: str = "contrast"

    def __post_init__(self) -> None:
        if min(self.anchors, self.positive_candidates, self.negative_pool) < 1:
            raise ValueError("pairs.anchors, pairs.positive_candidates and pairs.negative_pool must be >= 1")
        if self.hard_negatives < 0 or self.global_negatives < 0 or self.hard_negatives + self.global_negatives < 1:
            raise ValueError("pairs.hard_negatives and pairs.global_negatives must be >= 0 with at least one negative")
        if self.hard_negatives and self.hard_negative_neighbors < 2:
            raise ValueError("pairs.hard_negative_neighbors must be >= 2 when hard negatives are used")
        if self.margin < 0:
            raise ValueError(f"pairs.margin must be >= 0, got {self.margin}")
        if self.teacher_space not in TEACHER_SPACES:
            raise ValueError(f"pairs.teacher_space must be one of {TEACHER_SPACES}, got {self.teacher_space!r}")

    @property
    def neighbors(self) -> int:
        """Spatial neighbours to look up per anchor (positives and hard negatives share them)."""
        return max(self.positive_candidates, self.hard_negative_neighbors if self.hard_negatives else 0)


@dataclass
class DistillLossConfig:
    """loss = affinity_weight * InfoNCE(affinity) + semantic_weight * (1 - cos(student sem, teacher text)).

    semantic_voxels: voxels per scan in the semantic term (None = all); a random subset bounds
                     the cost of the (V, text dim) head output on large scans.
    """

    temperature: float = 0.07
    affinity_weight: float = 1.0
    semantic_weight: float = 1.0
    semantic_voxels: int | None = None

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ValueError(f"loss.temperature must be > 0, got {self.temperature}")
        if self.affinity_weight < 0 or self.semantic_weight < 0 or self.affinity_weight + self.semantic_weight <= 0:
            raise ValueError("loss weights must be >= 0 and not both 0")
        if self.semantic_voxels is not None and self.semantic_voxels < 1:
            raise ValueError("loss.semantic_voxels must be >= 1 or null")


@dataclass
class DistillValidationConfig:
    """The held-out ScanNet scan: label-free agreement with the teacher (selects ``student_best``)
    and ScanNet-20 mIoU without pooling, with GGP on the learned affinities and with uniform GGP."""

    enabled: bool = True
    scan: str | None = None  # None: <shared data>/scannet/scene0000_00.npz
    max_voxels: int | None = None
    anchors: int = 4096
    ggp_k: int = _DEFAULT_GGP.k
    ggp_tau: float = _DEFAULT_GGP.tau
    ggp_iterations: int = _DEFAULT_GGP.iterations

    def ggp(self, weights: str = "affinity") -> GGPConfig:
        return GGPConfig(k=self.ggp_k, tau=self.ggp_tau, iterations=self.ggp_iterations, weights=weights)


def _default_trainer() -> TrainerConfig:
    return TrainerConfig(steps=8000, batch_size=4, val_every=1000, checkpoint_every=500)


def _default_optim() -> OptimConfig:
    return OptimConfig(lr=2e-3, weight_decay=0.01, warmup_steps=300)


@dataclass
class DistillConfig:
    seed: int = 0
    trainer: TrainerConfig = field(default_factory=_default_trainer)
    optim: OptimConfig = field(default_factory=_default_optim)
    data: DistillDataConfig = field(default_factory=DistillDataConfig)
    student: StudentArchConfig = field(default_factory=StudentArchConfig)
    pairs: PairConfig = field(default_factory=PairConfig)
    loss: DistillLossConfig = field(default_factory=DistillLossConfig)
    validation: DistillValidationConfig = field(default_factory=DistillValidationConfig)
    teacher_cache: bool = True  # cache the teacher's features of deterministic views on disk
    # warm start: a student checkpoint directory whose weights begin the run (same architecture);
    # None = random initialisation. Resuming a run ignores it (the run's own checkpoint wins).
    init: str | None = None


def load_distill_config(path: str | Path) -> DistillConfig:
    return from_dict(DistillConfig, load_yaml(path), "")


def default_recipe_path() -> Path:
    """``training/configs/distill_default.yaml`` of this source tree."""
    return Path(__file__).resolve().parents[2] / "configs" / "distill_default.yaml"
