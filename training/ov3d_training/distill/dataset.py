"""Distillation items: one augmented, voxelised view of a scan plus its pair-sampling draws.

An item is looked up by a key ``(epoch, index)`` and every random draw comes from
``np.random.default_rng([seed, epoch, index])`` (see ``trainer.sampler``): the same key gives the
same view, anchors and negative pool in any worker, process or resumed run. Only the choice of
positives and negatives among those draws depends on the network side (the teacher's features,
computed on the device in the training step) and is deterministic given them.

Per item:

1. crop: scans larger than ``max_points`` keep the ``max_points`` points nearest to a random
   point (a ball crop, for memory; the student still sees every voxel of the crop);
2. the view: augmentation (``data.augment``, thinning included; none when ``augment`` is null), voxelisation at the
   training voxel size, and the network inputs by :func:`ov3d_ros.core.features.input_features`
   -- the function the Segmenter uses -- for the student and, if its feature set differs, for
   the teacher; both networks see the same voxels;
3. draws: ``anchors`` distinct voxels, their spatial neighbours (:func:`.pairs.anchor_neighbors`,
   computed here in the loader workers, off the training process), a pool of ``negative_pool``
   distinct voxels for the global negatives, and optionally the voxels of the semantic term.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ov3d_ros.core.features import input_features
from ov3d_ros.core.voxel import voxelize

from ..data.augment import augment_view, thin_points
from ..data.scene_cache import SceneCache
from .config import DistillDataConfig, DistillLossConfig, PairConfig
from .pairs import anchor_neighbors
from .scenes import DistillScene


@dataclass
class DistillItem:
    coords: np.ndarray  # (V, 3) int32 voxel grid coordinates
    student_features: np.ndarray  # (V, C_s) float32
    teacher_features: np.ndarray | None  # (V, C_t) float32, None = same as the student's
    anchors: np.ndarray  # (A,) int64 voxel indices
    neighbors: np.ndarray  # (A, K) int64 nearest other voxels of each anchor, nearest first
    pool: np.ndarray  # (P,) int64 candidates for global negatives
    semantic_index: np.ndarray | None  # (S,) int64 voxels of the semantic term (None = all)
    scene_index: int
    deterministic: bool  # no augmentation and no crop: the view is the same for every key
    source: str

    @property
    def num_voxels(self) -> int:
        return len(self.coords)


class DistillDataset(Dataset):
    """Keyed dataset over prepared scan files (module doc)."""

    def __init__(
        self,
        scene_files: list[Path],
        voxel_size: float,
        data: DistillDataConfig,
        pairs: PairConfig,
        loss: DistillLossConfig,
        student_features: str,
        teacher_features: str,
        seed: int,
        cache_scenes: int = 8,
    ) -> None:
        if not scene_files:
            raise ValueError("DistillDataset: no scans")
        self.scene_files = [Path(p) for p in scene_files]
        self.voxel_size = float(voxel_size)
        self.data = data
        self.pairs = pairs
        self.loss = loss
        self.student_features = student_features
        self.teacher_features = teacher_features
        self.seed = int(seed)
        self._scenes = SceneCache(self.scene_files, DistillScene.load, cache_scenes)

    def __len__(self) -> int:
        return len(self.scene_files)

    def scene(self, index: int) -> DistillScene:
        return self._scenes[index]

    def __getitem__(self, key: tuple[int, int] | int) -> DistillItem:
        epoch, index = key if isinstance(key, tuple) else (0, int(key))
        rng = np.random.default_rng([self.seed, int(epoch), int(index)])
        return make_item(self.scene(int(index)), int(index), self, rng)


def make_item(scene: DistillScene, scene_index: int, spec: DistillDataset, rng: np.random.Generator) -> DistillItem:
    data, pairs = spec.data, spec.pairs
    points, colors, normals = scene.points, scene.colors, scene.normals
    cropped = len(points) > data.max_points
    if cropped:
        center = points[rng.integers(len(points))]
        keep = np.sort(np.argpartition(((points - center) ** 2).sum(axis=1), data.max_points - 1)[: data.max_points])
        points, colors = points[keep], colors[keep]
        normals = None if normals is None else normals[keep]
    if data.augment is not None:
        keep = thin_points(len(points), data.augment.keep_ratio, rng)
        if keep is not None:
            points, colors = points[keep], colors[keep]
            normals = None if normals is None else normals[keep]
    rgb = colors.astype(np.float32) / 255.0
    if data.augment is not None:
        view = augment_view(points, rgb, normals, data.augment, rng)
        points, rgb, normals = view.points, view.colors, view.normals
    voxels = voxelize(points, spec.voxel_size, colors=rgb, normals=normals)
    student = input_features(voxels, spec.student_features)
    teacher = None if spec.teacher_features == spec.student_features else input_features(voxels, spec.teacher_features)

    total = voxels.num_voxels
    anchors = np.sort(rng.choice(total, size=min(pairs.anchors, total), replace=False)).astype(np.int64)
    neighbors = anchor_neighbors(voxels.centers, anchors, pairs.neighbors)
    pool = np.sort(rng.choice(total, size=min(pairs.negative_pool, total), replace=False)).astype(np.int64)
    semantic_index = None
    if spec.loss.semantic_voxels is not None and spec.loss.semantic_voxels < total:
        semantic_index = np.sort(rng.choice(total, size=spec.loss.semantic_voxels, replace=False)).astype(np.int64)
    return DistillItem(
        coords=voxels.coords,
        student_features=student,
        teacher_features=teacher,
        anchors=anchors,
        neighbors=neighbors,
        pool=pool,
        semantic_index=semantic_index,
        scene_index=scene_index,
        deterministic=data.augment is None and not cropped,
        source=scene.source,
    )


@dataclass
class DistillBatch:
    """B views in one sparse batch; per-item tensors index into the item's own voxels."""

    coords: torch.Tensor  # (V, 3) int32
    batch_index: torch.Tensor  # (V,) int64
    student_features: torch.Tensor  # (V, C_s)
    teacher_features: torch.Tensor | None  # (V, C_t) or None (= student_features)
    offsets: list[int]  # first voxel of each item in the batch
    sizes: list[int]  # voxels of each item
    anchors: list[torch.Tensor]
    neighbors: list[torch.Tensor]
    pools: list[torch.Tensor]
    semantic_index: list[torch.Tensor | None]
    scene_index: list[int]
    deterministic: list[bool]
    sources: list[str]

    def __len__(self) -> int:
        return len(self.sizes)

    def to(self, device: torch.device) -> DistillBatch:
        move = lambda t: None if t is None else t.to(device, non_blocking=True)
        return DistillBatch(
            move(self.coords),
            move(self.batch_index),
            move(self.student_features),
            move(self.teacher_features),
            list(self.offsets),
            list(self.sizes),
            [move(t) for t in self.anchors],
            [move(t) for t in self.neighbors],
            [move(t) for t in self.pools],
            [move(t) for t in self.semantic_index],
            list(self.scene_index),
            list(self.deterministic),
            list(self.sources),
        )

    def semantic_rows(self) -> torch.Tensor | None:
        """Batch rows of the semantic term (None = every voxel of every item)."""
        if all(index is None for index in self.semantic_index):
            return None
        parts = []
        for offset, size, index in zip(self.offsets, self.sizes, self.semantic_index):
            rows = torch.arange(size, device=self.coords.device) if index is None else index
            parts.append(rows + offset)
        return torch.cat(parts)


def collate_items(items: list[DistillItem]) -> DistillBatch:
    offsets, sizes = [], []
    offset = 0
    for item in items:
        offsets.append(offset)
        sizes.append(item.num_voxels)
        offset += item.num_voxels
    has_teacher = [item.teacher_features is not None for item in items]
    if any(has_teacher) and not all(has_teacher):
        raise ValueError("collate_items: items disagree on separate teacher features")
    as_tensor = lambda a: None if a is None else torch.from_numpy(np.ascontiguousarray(a))
    return DistillBatch(
        coords=torch.from_numpy(np.concatenate([i.coords for i in items]).astype(np.int32)),
        batch_index=torch.from_numpy(np.concatenate([np.full(i.num_voxels, b, np.int64) for b, i in enumerate(items)])),
        student_features=torch.from_numpy(np.concatenate([i.student_features for i in items]).astype(np.float32)),
        teacher_features=(
            torch.from_numpy(np.concatenate([i.teacher_features for i in items]).astype(np.float32))
            if all(has_teacher)
            else None
        ),
        offsets=offsets,
        sizes=sizes,
        anchors=[as_tensor(i.anchors) for i in items],
        neighbors=[as_tensor(i.neighbors) for i in items],
        pools=[as_tensor(i.pool) for i in items],
        semantic_index=[as_tensor(i.semantic_index) for i in items],
        scene_index=[i.scene_index for i in items],
        deterministic=[i.deterministic for i in items],
        sources=[i.source for i in items],
    )
