"""Mutually exclusive grid masks for MPEC's two views.

MPEC masks each view with a grid of cubic cells and asks a masked point of one view to find its
entity among the other view's entities. Useful only if the other view *sees* that point, so the
masks here are exclusive by construction:

* cells are laid on the scan's own (unaugmented) coordinates, so both views refer to the same
  cells whatever rotation, scale or distortion each view gets; the grid origin is shifted by a
  random offset per sample so cell borders move between samples;
* the occupied cells are shuffled once; the first ``round(ratio * C)`` are masked in view u, the
  next ``round(ratio * C)`` in view v, the rest in neither. ``ratio`` is therefore exact in cells,
  and a cell (and every point in it) is masked in at most one view. ``ratio <= 0.5`` is required.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class GridMaskConfig:
    cell_size: float = 0.1  # metres
    ratio: float = 0.4  # fraction of occupied cells masked in each view

    def __post_init__(self) -> None:
        if not (self.cell_size > 0):
            raise ValueError(f"grid mask cell_size must be > 0 metres, got {self.cell_size}")
        if not (0.0 <= self.ratio <= 0.5):
            raise ValueError(
                f"grid mask ratio must be in [0, 0.5] (the two views' masks are disjoint), got {self.ratio}"
            )


@dataclass
class ViewMasks:
    u: np.ndarray  # (N,) bool, point masked in view u
    v: np.ndarray  # (N,) bool, point masked in view v
    cell: np.ndarray  # (N,) int64 cell index of each point
    num_cells: int
    cells_u: np.ndarray  # indices of the cells masked in u
    cells_v: np.ndarray  # indices of the cells masked in v


def exclusive_grid_masks(points: np.ndarray, config: GridMaskConfig, rng: np.random.Generator) -> ViewMasks:
    """Masks for the two views of ``points`` (N, 3), in the scan's frame (module doc)."""
    points = np.asarray(points, dtype=np.float64)
    n = len(points)
    if n == 0:
        empty = np.zeros(0, dtype=bool)
        return ViewMasks(empty, empty.copy(), np.zeros(0, np.int64), 0, np.zeros(0, np.int64), np.zeros(0, np.int64))
    offset = rng.uniform(0.0, config.cell_size, size=3)
    cells = np.floor((points + offset) / config.cell_size).astype(np.int64)
    _, cell = np.unique(cells, axis=0, return_inverse=True)
    cell = cell.reshape(-1)
    num_cells = int(cell.max()) + 1
    per_view = round(config.ratio * num_cells)
    order = rng.permutation(num_cells)
    cells_u, cells_v = order[:per_view], order[per_view : 2 * per_view]
    in_u = np.zeros(num_cells, dtype=bool)
    in_v = np.zeros(num_cells, dtype=bool)
    in_u[cells_u] = True
    in_v[cells_v] = True
    return ViewMasks(in_u[cell], in_v[cell], cell, num_cells, np.sort(cells_u), np.sort(cells_v))
