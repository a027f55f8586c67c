"""Fuse back-projected frames into a voxel map, as a robot's mapping stack publishes it.

Every observed point votes in its voxel (default 2 cm): the map point is the mean of the points
that fell in the voxel, its colour their mean colour, its label the most frequent label (ties go
to the smaller label value, so the result does not depend on the order of frames). Each frame is
reduced on arrival; the reductions are merged only when a snapshot is taken.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_BITS = 21
_OFFSET = 1 << (_BITS - 1)
_MASK = (1 << _BITS) - 1


def voxel_keys(points: np.ndarray, voxel: float) -> np.ndarray:
    """int64 key per point (21 bits per axis: +-10 km at 1 cm)."""
    idx = np.floor(points / voxel).astype(np.int64) + _OFFSET
    return (idx[:, 0] << (2 * _BITS)) | (idx[:, 1] << _BITS) | idx[:, 2]


@dataclass
class _Block:
    keys: np.ndarray  # (V,) sorted unique voxel keys
    count: np.ndarray  # (V,) points per voxel
    xyz: np.ndarray  # (V, 3) float64 sums
    rgb: np.ndarray  # (V, 3) float64 sums
    vote_key: np.ndarray  # (P,) voxel key of each (voxel, label) pair
    vote_label: np.ndarray  # (P,) uint32 label
    vote_count: np.ndarray  # (P,) votes


def _reduce(keys, count, xyz, rgb, vote_key, vote_label, vote_count) -> _Block:
    uk, inv = np.unique(keys, return_inverse=True)
    inv = inv.reshape(-1)
    c = np.bincount(inv, weights=count, minlength=len(uk))
    s_xyz = np.stack([np.bincount(inv, weights=xyz[:, k], minlength=len(uk)) for k in range(3)], axis=1)
    s_rgb = np.stack([np.bincount(inv, weights=rgb[:, k], minlength=len(uk)) for k in range(3)], axis=1)
    # (voxel, label) pairs as one int64: compact voxel index in the high bits, the label below.
    vox = np.searchsorted(uk, vote_key)
    code = (vox.astype(np.int64) << 32) | vote_label.astype(np.int64)
    up, pinv = np.unique(code, return_inverse=True)
    votes = np.bincount(pinv.reshape(-1), weights=vote_count, minlength=len(up))
    return _Block(uk, c, s_xyz, s_rgb, uk[up >> 32], (up & 0xFFFFFFFF).astype(np.uint32), votes)


class VoxelMap:
    def __init__(self, voxel: float = 0.02):
        if voxel <= 0:
            raise ValueError(f"voxel size must be > 0, got {voxel}")
        self.voxel = float(voxel)
        self._blocks: list[_Block] = []

    def integrate(self, points: np.ndarray, colors: np.ndarray, labels: np.ndarray) -> None:
        """Add one frame: points (N, 3) world, colors (N, 3) uint8, labels (N,) uint32."""
        if len(points) == 0:
            return
        keys = voxel_keys(np.asarray(points, dtype=np.float64), self.voxel)
        ones = np.ones(len(keys))
        self._blocks.append(
            _reduce(
                keys,
                ones,
                np.asarray(points, np.float64),
                np.asarray(colors, np.float64),
                keys,
                np.asarray(labels, np.uint32),
                ones,
            )
        )

    def _merged(self) -> _Block | None:
        if not self._blocks:
            return None
        if len(self._blocks) > 1:
            b = self._blocks
            merged = _reduce(
                np.concatenate([x.keys for x in b]),
                np.concatenate([x.count for x in b]),
                np.concatenate([x.xyz for x in b]),
                np.concatenate([x.rgb for x in b]),
                np.concatenate([x.vote_key for x in b]),
                np.concatenate([x.vote_label for x in b]),
                np.concatenate([x.vote_count for x in b]),
            )
            self._blocks = [merged]
        return self._blocks[0]

    def __len__(self) -> int:
        block = self._merged()
        return 0 if block is None else len(block.keys)

    def snapshot(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(points (V, 3) float32, colors (V, 3) uint8, labels (V,) uint32), sorted by voxel key."""
        block = self._merged()
        if block is None:
            return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8), np.zeros(0, np.uint32)
        points = (block.xyz / block.count[:, None]).astype(np.float32)
        colors = np.clip(np.rint(block.rgb / block.count[:, None]), 0, 255).astype(np.uint8)
        # Majority vote: pairs are sorted by (key, label); order each voxel's pairs by votes
        # descending (stable, so ties keep the smaller label) and take the first.
        order = np.lexsort((-block.vote_count, block.vote_key))
        first = np.ones(len(order), dtype=bool)
        first[1:] = block.vote_key[order][1:] != block.vote_key[order][:-1]
        winners = order[first]
        labels = block.vote_label[winners]
        return points, colors, labels
