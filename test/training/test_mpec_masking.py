"""Grid masks (exclusive between views, ~40 % of 0.1 m cells) and the learnable mask token."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ov3d_training.data.augment import AugmentConfig
from ov3d_training.data.dataset import ViewConfig, collate_items, color_channels, make_item
from ov3d_training.data.masking import GridMaskConfig, exclusive_grid_masks
from ov3d_training.data.scene import TrainingScene
from ov3d_training.mpec.model import MPECModel, MPECModelConfig

# the item's points are the scene's, in order (no crop, no thinning): point indices carry over
UNTHINNED = ViewConfig(max_points=10_000, augment=AugmentConfig(keep_ratio=(1.0, 1.0)))


def plane_points(spacing: float = 0.02, size: float = 2.0) -> np.ndarray:
    g = np.arange(0, size, spacing) + spacing / 2
    x, y = np.meshgrid(g, g, indexing="ij")
    return np.stack([x.ravel(), y.ravel(), np.zeros(x.size)], 1)


def test_masks_are_mutually_exclusive_and_cover_the_ratio_of_cells():
    points = plane_points()
    masks = exclusive_grid_masks(points, GridMaskConfig(0.1, 0.4), np.random.default_rng(3))
    assert not (masks.u & masks.v).any(), "a point is masked in both views"
    assert len(np.intersect1d(masks.cells_u, masks.cells_v)) == 0
    assert len(masks.cells_u) == len(masks.cells_v) == round(0.4 * masks.num_cells)
    # a masked cell is masked for every point in it, and only those
    assert np.array_equal(masks.u, np.isin(masks.cell, masks.cells_u))
    assert np.array_equal(masks.v, np.isin(masks.cell, masks.cells_v))
    # uniform density: the point ratio follows the cell ratio
    assert masks.u.mean() == pytest.approx(0.4, abs=0.05)
    assert masks.v.mean() == pytest.approx(0.4, abs=0.05)
    # every point masked in one view is visible in the other
    assert not masks.v[masks.u].any() and not masks.u[masks.v].any()


def test_cells_are_cubes_of_the_configured_size():
    points = plane_points()
    masks = exclusive_grid_masks(points, GridMaskConfig(0.1, 0.4), np.random.default_rng(0))
    extent = np.array([np.ptp(points[masks.cell == c, :2], axis=0).max() for c in range(masks.num_cells)])
    assert extent.max() < 0.1  # points of one cell lie within 0.1 m
    # ~ (2 m / 0.1 m)^2 cells, +1 row/column for the random grid offset
    assert 400 <= masks.num_cells <= 441


def test_masks_are_reproducible_and_vary_with_the_seed():
    points = plane_points()
    a = exclusive_grid_masks(points, GridMaskConfig(), np.random.default_rng(7))
    b = exclusive_grid_masks(points, GridMaskConfig(), np.random.default_rng(7))
    c = exclusive_grid_masks(points, GridMaskConfig(), np.random.default_rng(8))
    assert np.array_equal(a.u, b.u) and np.array_equal(a.v, b.v)
    assert not np.array_equal(a.u, c.u)


def test_ratio_above_one_half_is_refused():
    with pytest.raises(ValueError, match=r"0\.5"):
        GridMaskConfig(ratio=0.6)


def _scene(rng: np.random.Generator, n: int = 1500) -> TrainingScene:
    points = rng.uniform(0, 1.5, (n, 3)).astype(np.float32)
    return TrainingScene(
        points=points,
        colors=rng.integers(0, 255, (n, 3)).astype(np.uint8),
        normals=np.tile(np.float32([0, 0, 1]), (n, 1)),
        entity=(np.arange(n) % 4).astype(np.int32),
        texts=(),
        text_embeddings=np.zeros((0, 8), np.float32),
        match_text=np.zeros(0, np.int32),
        match_entity=np.zeros(0, np.int32),
        entity_source="instances",
        source="synthetic",
    )


def test_voxel_is_masked_iff_one_of_its_points_is():
    item = make_item(_scene(np.random.default_rng(0)), 0.05, ViewConfig(max_points=10_000), np.random.default_rng(1))
    for view in item.views:
        expected = np.zeros(len(view.coords), dtype=bool)
        expected[view.point_to_voxel[view.point_masked]] = True
        assert np.array_equal(view.voxel_masked, expected)
        assert view.voxel_masked.any() and not view.voxel_masked.all()
    assert not (item.views[0].point_masked & item.views[1].point_masked).any()


def test_mask_token_replaces_only_masked_colors():
    torch.manual_seed(0)
    model = MPECModel(MPECModelConfig(channels=(8, 16), blocks=(1, 1), decoder_blocks=1, adapter_hidden=16), text_dim=8)
    with torch.no_grad():
        model.mask_token.copy_(torch.tensor([0.25, -0.5, 0.75]))
    color = color_channels("rgb_height")
    features = torch.randn(50, 4)
    masked = torch.zeros(50, dtype=torch.bool)
    masked[::3] = True
    out = model.apply_mask_token(features, masked)
    assert torch.equal(out[~masked], features[~masked])  # unmasked voxels: untouched
    assert torch.equal(out[masked][:, color], model.mask_token.detach().expand(int(masked.sum()), 3))
    other = [c for c in range(4) if not (color.start <= c < color.stop)]
    assert torch.equal(out[masked][:, other], features[masked][:, other])  # height is not masked
    # the token learns only through masked voxels
    out.sum().backward()
    assert torch.allclose(model.mask_token.grad, torch.full((3,), float(masked.sum())))


def test_masked_color_never_reaches_the_network():
    rng = np.random.default_rng(2)
    scene = _scene(rng)
    item = make_item(scene, 0.05, UNTHINNED, np.random.default_rng(5))
    batch = collate_items([item])
    model = MPECModel(MPECModelConfig(channels=(8, 16), blocks=(1, 1), decoder_blocks=1, adapter_hidden=16), text_dim=8)
    seen = model.apply_mask_token(batch.features, batch.voxel_masked)
    color = color_channels("rgb_height")
    # changing the colours of masked points changes nothing the network sees
    recolored = TrainingScene(**{**scene.__dict__})
    recolored.colors = scene.colors.copy()
    hidden = np.zeros(len(scene.points), dtype=bool)
    hidden[np.flatnonzero(item.views[0].point_masked)] = True
    recolored.colors[hidden] = 255 - recolored.colors[hidden]
    item2 = make_item(recolored, 0.05, UNTHINNED, np.random.default_rng(5))
    batch2 = collate_items([item2])
    seen2 = model.apply_mask_token(batch2.features, batch2.voxel_masked)
    view_u = batch.batch_index == 0
    assert torch.equal(seen[view_u][:, color], seen2[view_u][:, color])
    # ... while view v sees them (they are visible there), so its input does change
    view_v = batch.batch_index == 1
    assert not torch.equal(seen[view_v][:, color], seen2[view_v][:, color])
