"""One entry point for every GGP setting: the geometry it needs, the pooler it builds, what they share.

A setting with ``coarsen`` 1 pools on the voxels (:class:`~.voxel_graph.PoolingGraph`), one with
``coarsen`` > 1 on cells (:class:`~.cell_graph.CoarseToFineGraph`). Callers hold either as a
:class:`Pooler`: both pool (V, C) values the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol, TypeAlias, runtime_checkable

import numpy as np
import torch

from ..neighbors import KNN, knn_voxels
from .cell_graph import CoarseGeometry, CoarseToFineGraph, build_coarse_to_fine_graph, coarse_geometry
from .config import GGPConfig
from .voxel_graph import PoolingGraph, build_voxel_graph

# What a graph needs of the geometry alone (no embeddings): the voxels' neighbours, or the cells
# and theirs. It can be computed while the network runs (the Segmenter's kNN worker).
Geometry: TypeAlias = KNN | CoarseGeometry


@runtime_checkable
class Pooler(Protocol):
    """T products of a row-stochastic operator with (V, C) values, on the pooler's device."""

    @property
    def num_voxels(self) -> int: ...

    def to(self, device: torch.device | str) -> Pooler: ...

    def pool(self, values: torch.Tensor, iterations: int, *, method: str = "auto") -> torch.Tensor:
        """(V, C) values pooled ``iterations`` times, float32; T = 0 returns a copy."""
        ...

    def pool_stages(self, values: torch.Tensor, iterations: Iterable[int]) -> Iterator[tuple[int, torch.Tensor]]:
        """(T, values pooled T times) for each T in increasing order, each continuing from the last."""
        ...


def pooling_geometry(
    positions: np.ndarray | torch.Tensor, k: int, coarsen: int, voxel_size: float, *, include_self: bool = True
) -> Geometry:
    """The geometry a graph of this k / coarsen / include_self needs, for ``build_pooling_graph(knn=...)``:
    the voxels' k nearest voxels (coarsen 1), or the cells and their k nearest cells (coarsen > 1)."""
    if coarsen > 1:
        return coarse_geometry(positions, k, coarsen, voxel_size)
    return knn_voxels(positions, k, include_self=include_self, cell_size=voxel_size)


def build_pooling_graph(
    positions: np.ndarray | torch.Tensor,
    embeddings: np.ndarray | torch.Tensor | None = None,
    config: GGPConfig = GGPConfig(),
    *,
    knn: Geometry | None = None,
    cell_size: float | None = None,
    device: torch.device | str | None = None,
) -> PoolingGraph | CoarseToFineGraph:
    """The pooler of ``config``: a :class:`PoolingGraph` (coarsen 1) or a :class:`CoarseToFineGraph`.

    positions:  (V, 3) voxel centres (metres).
    embeddings: (V, C) affinity embeddings; required for ``weights="affinity"``.
    knn:        precomputed :func:`pooling_geometry` of the same setting to reuse; else computed here.
    cell_size:  the voxel size: the CUDA kNN's grid cell, and the unit of coarse-to-fine cells
                (required with coarsen > 1).
    device:     where the graph lives (default: the device of ``embeddings``/``positions``).
    """
    if config.coarsen > 1:
        geometry = knn if isinstance(knn, CoarseGeometry) else None
        return build_coarse_to_fine_graph(
            positions, embeddings, config, voxel_size=cell_size, geometry=geometry, device=device
        )
    if isinstance(knn, CoarseGeometry):
        raise TypeError("GGP on voxels (coarsen 1) needs the voxels' KNN, got the cells' CoarseGeometry")
    return build_voxel_graph(positions, embeddings, config, knn=knn, cell_size=cell_size, device=device)
