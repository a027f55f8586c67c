"""MPEC training items: two augmented, masked, voxelised views of one prepared scene.

An item is looked up by a key ``(epoch, index)`` and every random draw comes from
``np.random.default_rng([seed, epoch, index])``: the same key gives the same item in any worker,
process or resumed run (see ``trainer.sampler``).

Per item:

1. crop: scenes larger than ``max_points`` keep the ``max_points`` points nearest to a random
   centre point (a ball crop; bounds memory and adds variety); then a random fraction of the
   points is kept (``augment.keep_ratio``), so the network also learns sparse surfaces;
2. masks: exclusive 0.1 m grid masks for views u and v (``masking``), on the scene's own
   coordinates;
3. each view: its own augmentation (``augment``), voxelised at the training voxel size, and the
   network input computed by :func:`ov3d_ros.core.features.input_features` -- the same function
   the Segmenter uses, so training and inference agree. A voxel is *masked* when any of its
   points is masked: a masked point's colour never reaches the network;
4. entities re-indexed to the ones left after the crop, texts restricted to them.

The network replaces the colour channels of masked voxels by its learnable token (``mpec.model``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ov3d_ros.core.features import DEFAULT_FEATURES, feature_set, input_features
from ov3d_ros.core.voxel import voxelize

from .augment import AugmentConfig, augment_view, thin_points
from .masking import GridMaskConfig, exclusive_grid_masks
from .scene import TrainingScene
from .scene_cache import SceneCache


@dataclass
class ViewConfig:
    max_points: int = 120_000
    input_features: str = DEFAULT_FEATURES
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    mask: GridMaskConfig = field(default_factory=GridMaskConfig)


@dataclass
class View:
    coords: np.ndarray  # (V, 3) int32 voxel grid coordinates
    features: np.ndarray  # (V, C) float32 network input (colour not yet replaced by the token)
    voxel_masked: np.ndarray  # (V,) bool
    point_to_voxel: np.ndarray  # (N,) int64
    point_masked: np.ndarray  # (N,) bool


@dataclass
class MPECItem:
    views: tuple[View, View]  # u, v
    entity: np.ndarray  # (N,) int64, 0 = background
    num_entities: int  # K + 1
    text_embeddings: np.ndarray  # (T, D)
    match: np.ndarray  # (T, K + 1) bool: text t names entity k (column 0, background, is never named)
    source: str


class MPECDataset(Dataset):
    """Keyed dataset over prepared scene files (module doc)."""

    def __init__(
        self, scene_files: list[Path], voxel_size: float, config: ViewConfig, seed: int, cache_scenes: int = 8
    ) -> None:
        if not scene_files:
            raise ValueError("MPECDataset: no scenes")
        self.scene_files = [Path(p) for p in scene_files]
        self.voxel_size = float(voxel_size)
        self.config = config
        self.seed = int(seed)
        self._scenes = SceneCache(self.scene_files, TrainingScene.load, cache_scenes)

    def __len__(self) -> int:
        return len(self.scene_files)

    def scene(self, index: int) -> TrainingScene:
        return self._scenes[index]

    def __getitem__(self, key: tuple[int, int] | int) -> MPECItem:
        epoch, index = key if isinstance(key, tuple) else (0, int(key))
        rng = np.random.default_rng([self.seed, int(epoch), int(index)])
        return make_item(self.scene(int(index)), self.voxel_size, self.config, rng)


def make_item(scene: TrainingScene, voxel_size: float, config: ViewConfig, rng: np.random.Generator) -> MPECItem:
    points, colors, normals, entity = scene.points, scene.colors, scene.normals, scene.entity.astype(np.int64)
    if len(points) > config.max_points:
        center = points[rng.integers(len(points))]
        keep = np.sort(
            np.argpartition(((points - center) ** 2).sum(axis=1), config.max_points - 1)[: config.max_points]
        )
        points, colors, normals, entity = points[keep], colors[keep], normals[keep], entity[keep]
    keep = thin_points(len(points), config.augment.keep_ratio, rng)
    if keep is not None:
        points, colors, normals, entity = points[keep], colors[keep], normals[keep], entity[keep]

    masks = exclusive_grid_masks(points, config.mask, rng)
    rgb = colors.astype(np.float32) / 255.0
    views = []
    for masked in (masks.u, masks.v):
        aug = augment_view(points, rgb, normals, config.augment, rng)
        voxels = voxelize(aug.points, voxel_size, colors=aug.colors, normals=aug.normals)
        voxel_masked = np.zeros(voxels.num_voxels, dtype=bool)
        voxel_masked[voxels.point_to_voxel[masked]] = True
        views.append(
            View(
                voxels.coords,
                input_features(voxels, config.input_features),
                voxel_masked,
                voxels.point_to_voxel,
                masked,
            )
        )

    # entities left after the crop, renumbered 0 (background), 1..K
    present = np.unique(entity[entity > 0])
    renumber = np.zeros(int(scene.entity.max()) + 1 if len(scene.entity) else 1, np.int64)
    renumber[present] = np.arange(1, len(present) + 1)
    entity = renumber[entity]
    num_entities = len(present) + 1

    match = np.zeros((len(scene.texts), num_entities), dtype=bool)
    if len(scene.match_text):
        alive = renumber[scene.match_entity] > 0
        match[scene.match_text[alive], renumber[scene.match_entity[alive]]] = True
    named = match.any(axis=1)  # texts whose entities were all cropped away are dropped
    return MPECItem(
        (views[0], views[1]), entity, num_entities, scene.text_embeddings[named], match[named], scene.source
    )


@dataclass
class MPECBatch:
    """B items, 2B views in one sparse batch: view u of item b is batch element 2b, view v 2b + 1."""

    coords: torch.Tensor  # (V, 3) int32
    batch_index: torch.Tensor  # (V,) int64
    features: torch.Tensor  # (V, C) float32
    voxel_masked: torch.Tensor  # (V,) bool
    point_to_voxel_u: list[torch.Tensor]  # per item (N_b,) int64 into the batch's voxels
    point_to_voxel_v: list[torch.Tensor]
    entity: list[torch.Tensor]  # per item (N_b,) int64
    num_entities: list[int]
    text_embeddings: list[torch.Tensor]  # per item (T_b, D)
    match: list[torch.Tensor]  # per item (T_b, K_b + 1) bool
    sources: list[str]

    def to(self, device: torch.device) -> MPECBatch:
        move = lambda t: t.to(device, non_blocking=True)
        return MPECBatch(
            move(self.coords),
            move(self.batch_index),
            move(self.features),
            move(self.voxel_masked),
            [move(t) for t in self.point_to_voxel_u],
            [move(t) for t in self.point_to_voxel_v],
            [move(t) for t in self.entity],
            list(self.num_entities),
            [move(t) for t in self.text_embeddings],
            [move(t) for t in self.match],
            list(self.sources),
        )

    def __len__(self) -> int:
        return len(self.entity)


def collate_items(items: list[MPECItem]) -> MPECBatch:
    coords, batch_index, features, masked = [], [], [], []
    p2v_u, p2v_v = [], []
    offset = 0
    for b, item in enumerate(items):
        for v, view in enumerate(item.views):
            coords.append(view.coords)
            batch_index.append(np.full(len(view.coords), 2 * b + v, np.int64))
            features.append(view.features)
            masked.append(view.voxel_masked)
            (p2v_u if v == 0 else p2v_v).append(torch.from_numpy(view.point_to_voxel + offset))
            offset += len(view.coords)
    return MPECBatch(
        coords=torch.from_numpy(np.concatenate(coords).astype(np.int32)),
        batch_index=torch.from_numpy(np.concatenate(batch_index)),
        features=torch.from_numpy(np.concatenate(features).astype(np.float32)),
        voxel_masked=torch.from_numpy(np.concatenate(masked)),
        point_to_voxel_u=p2v_u,
        point_to_voxel_v=p2v_v,
        entity=[torch.from_numpy(item.entity) for item in items],
        num_entities=[item.num_entities for item in items],
        text_embeddings=[torch.from_numpy(np.ascontiguousarray(item.text_embeddings, np.float32)) for item in items],
        match=[torch.from_numpy(item.match) for item in items],
        sources=[item.source for item in items],
    )


def color_channels(name: str) -> slice:
    """Where the colour channels sit in the input of feature set ``name``."""
    spec = feature_set(name)
    widths = {"colors": 3, "height": 1, "normals": 3}
    start = 0
    for use in spec.uses:
        if use == "colors":
            return slice(start, start + 3)
        start += widths[use]
    raise ValueError(f"input features {name!r} have no colour channels for the mask token to replace")


__all__ = ["MPECBatch", "MPECDataset", "MPECItem", "View", "ViewConfig", "collate_items", "color_channels", "make_item"]
