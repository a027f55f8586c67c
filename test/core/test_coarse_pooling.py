"""Coarse-to-fine GGP: the formula P W_c^T R on a real scan, its invariants, its reach, its plumbing."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from ov3d_ros.core.geometry import geometric_embedding
from ov3d_ros.core.ggp import (
    CoarseGeometry,
    CoarseToFineGraph,
    GGPConfig,
    Pooler,
    PoolingGraph,
    build_pooling_graph,
    coarse_geometry,
)
from ov3d_ros.core.segmenter import Segmenter, SegmenterConfig
from ov3d_ros.core.voxel import voxelize
from ov3d_ros.io.scan import Scan

VOXEL = 0.05


@pytest.fixture(scope="module")
def corner(scannet_npz):
    """A corner of the real ScanNet scan at 5 cm: voxel centres, hand-made embedding, labels."""
    data = np.load(scannet_npz)
    keep = (data["xyz"][:, 0] < -1.0) & (data["xyz"][:, 1] < 0.5)
    v = voxelize(data["xyz"][keep], VOXEL, colors=data["rgb"][keep])
    return v.centers.astype(np.float32), geometric_embedding(v.centers, v.colors)


def _dense_reference(centers, embedding, k, factor, tau, weights, iterations, values):
    """P W_c^T R values with dense matrices, straight from the module doc (no kNN library, no sparse)."""
    cells = np.floor(centers / (VOXEL * factor)).astype(np.int64)
    _, cell_of = np.unique(cells, axis=0, return_inverse=True)
    cell_of = cell_of.reshape(-1)
    n = cell_of.max() + 1
    restrict = np.zeros((n, len(centers)))
    restrict[cell_of, np.arange(len(centers))] = 1.0
    restrict /= restrict.sum(axis=1, keepdims=True)
    cell_centers = restrict @ centers.astype(np.float64)
    unit = embedding.numpy().astype(np.float64)
    unit /= np.linalg.norm(unit, axis=1, keepdims=True).clip(1e-12)
    cell_unit = np.zeros((n, unit.shape[1]))
    np.add.at(cell_unit, cell_of, unit)
    cell_unit /= np.linalg.norm(cell_unit, axis=1, keepdims=True).clip(1e-12)
    d = np.linalg.norm(cell_centers[:, None] - cell_centers[None], axis=2)
    near = np.argsort(d, axis=1, kind="stable")[:, :k]  # itself first (distance 0)

    def softmax_rows(x):
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    rows = np.arange(n)[:, None]
    w_coarse = np.zeros((n, n))
    if weights == "affinity":
        w_coarse[rows, near] = softmax_rows((cell_unit[:, None] * cell_unit[near]).sum(-1) / tau)
    elif weights == "distance":
        nd = d[rows, near]
        w_coarse[rows, near] = softmax_rows(-((nd / np.median(nd.max(axis=1))) ** 2))
    else:
        w_coarse[rows, near] = 1.0 / k
    m = min(8, k)
    candidates = near[cell_of, :m]
    prolong = np.zeros((len(centers), n))
    at = np.arange(len(centers))[:, None]
    if weights == "affinity":
        prolong[at, candidates] = softmax_rows((unit[:, None] * cell_unit[candidates]).sum(-1) / tau)
    elif weights == "distance":
        pd = np.linalg.norm(centers[:, None].astype(np.float64) - cell_centers[candidates], axis=2)
        prolong[at, candidates] = softmax_rows(-((pd / np.median(pd.max(axis=1))) ** 2))
    else:
        prolong[at, candidates] = 1.0 / m
    state = restrict @ values
    for _ in range(iterations):
        state = w_coarse @ state
    return prolong @ state


@pytest.mark.parametrize("weights", ["affinity", "distance", "uniform"])
def test_coarse_to_fine_pooling_is_the_formula_on_a_real_scan(corner, weights):
    centers, embedding = corner
    values = np.random.default_rng(0).normal(size=(len(centers), 6))
    config = GGPConfig(k=16, tau=0.1, iterations=0, weights=weights, coarsen=3)
    graph = build_pooling_graph(centers, embedding, config, cell_size=VOXEL)
    assert isinstance(graph, CoarseToFineGraph) and graph.num_voxels == len(centers)
    assert isinstance(graph, Pooler) and isinstance(graph.coarse, PoolingGraph) and isinstance(graph.coarse, Pooler)
    assert graph.num_cells < len(centers) / 3  # surfaces: far fewer cells than voxels
    reference = _dense_reference(centers, embedding, 16, 3, 0.1, weights, 5, values)
    pooled = graph.pool(torch.from_numpy(values).float(), 5).numpy()
    assert np.abs(pooled - reference).max() < 1e-4


def test_invariants_constant_fields_identity_at_zero_stages_and_linearity(corner):
    centers, embedding = corner
    graph = build_pooling_graph(centers, embedding, GGPConfig(k=16, tau=0.1, coarsen=2), cell_size=VOXEL)
    ones = torch.ones((len(centers), 3))
    assert torch.allclose(graph.pool(ones, 7), ones, atol=1e-5)  # row-stochastic R, W_c and P
    values = torch.from_numpy(np.random.default_rng(1).normal(size=(len(centers), 20))).float()
    assert torch.equal(graph.pool(values, 0), values)  # T = 0 is no pooling, as for the plain graph
    stages = dict(graph.pool_stages(values, (4, 0, 9)))
    assert torch.equal(stages[0], values)
    assert torch.allclose(stages[4], graph.pool(values, 4), atol=1e-6)
    assert torch.allclose(stages[9], graph.pool(values, 9), atol=1e-6)
    text = torch.from_numpy(np.random.default_rng(2).normal(size=(20, 4))).float()
    # the logit path: pooling logits = pooling features, then scoring
    assert torch.allclose(graph.pool(values @ text, 6), graph.pool(values, 6) @ text, atol=1e-4)
    with pytest.raises(ValueError, match=">= 0"):
        graph.pool(values, -1)


def test_cells_reach_further_per_pass_than_voxels(corner):
    """Why it exists: the mass of one voxel's value, after T passes, lies farther from it on cells."""
    centers, _embedding = corner
    source = int(np.argmin(np.linalg.norm(centers - centers.mean(axis=0), axis=1)))
    delta = torch.zeros((len(centers), 1))
    delta[source] = 1.0

    def spread(coarsen):
        """Mean distance from the source, weighted by how much of its value each voxel takes."""
        config = GGPConfig(k=16, iterations=0, weights="uniform", coarsen=coarsen)
        taken = build_pooling_graph(centers, None, config, cell_size=VOXEL).pool(delta, 8)[:, 0].numpy()
        return float((taken * np.linalg.norm(centers - centers[source], axis=1)).sum() / taken.sum())

    assert spread(3) > 2.0 * spread(1)


def test_geometry_groups_voxels_into_cells(corner):
    centers, _ = corner
    geometry = coarse_geometry(centers, 16, 4, VOXEL)
    assert isinstance(geometry, CoarseGeometry) and int(geometry.counts.sum()) == len(centers)
    cells = np.floor(centers / (VOXEL * 4)).astype(np.int64)
    ids = geometry.cell_of.numpy()
    for cell in np.unique(ids)[:50]:  # every voxel of a cell lies in one grid cube
        assert len(np.unique(cells[ids == cell], axis=0)) == 1
    means = np.stack([centers[ids == c].mean(axis=0) for c in range(geometry.num_cells)])
    assert np.abs(means - geometry.centers.numpy()).max() < 1e-5
    assert (geometry.knn.indices[:, 0].numpy() == np.arange(geometry.num_cells)).all()  # itself first
    one = coarse_geometry(centers, 16, 1, VOXEL)  # cells of one voxel: every voxel its own cell
    assert one.num_cells == len(centers)
    with pytest.raises(ValueError, match="voxel size"):
        build_pooling_graph(centers, None, GGPConfig(weights="uniform", coarsen=2))  # no cell_size


def test_config_records_the_cells_and_reads_records_from_before_them():
    config = GGPConfig(k=12, tau=0.1, iterations=30, coarsen=3, centering=0.25)
    assert config.record() == {"k": 12, "tau": 0.1, "iterations": 30, "coarsen": 3, "centering": 0.25}
    assert GGPConfig.from_record(config.record()) == config
    older = GGPConfig.from_record({"k": 12, "tau": 0.1, "iterations": 30})  # model.json from before both
    assert older.coarsen == 1 and older.centering == 0.0
    with pytest.raises(ValueError, match="coarsen"):
        GGPConfig(coarsen=0)
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="centering"):
            GGPConfig(centering=bad)


def test_segmenter_builds_the_cells_on_its_worker_thread_and_labels_the_cloud(random_checkpoint_5cm, corner):
    """Random weights: plumbing only. The worker's precomputed cells give the same graph."""
    centers, _ = corner
    scan = Scan(points=centers, colors=np.full((len(centers), 3), 128, np.uint8))
    config = SegmenterConfig(device="cpu", ggp=GGPConfig(k=16, tau=0.1, iterations=6, coarsen=3))
    segmenter = Segmenter.from_checkpoint(random_checkpoint_5cm, device="cpu", allow_untrained=True, config=config)
    processed = segmenter.process(scan)
    assert isinstance(processed.graph, CoarseToFineGraph)
    rebuilt = build_pooling_graph(processed.voxels.centers, processed.affinity, segmenter.config.ggp, cell_size=VOXEL)
    assert torch.equal(processed.graph.prolong_cells, rebuilt.prolong_cells)
    assert torch.allclose(processed.graph.prolong_weights, rebuilt.prolong_weights, atol=1e-6)
    result = segmenter.query(processed, "chair; table")
    assert result.semantic.shape == (len(centers),) and np.isfinite(result.score).all()
    plain = segmenter.process(scan, ggp=replace(segmenter.config.ggp, coarsen=1))  # this cloud's own setting
    assert not isinstance(plain.graph, CoarseToFineGraph) and plain.ggp.coarsen == 1
    assert segmenter.config.ggp.coarsen == 3  # the segmenter's own stays


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_cuda_matches_cpu(corner):
    centers, embedding = corner
    config = GGPConfig(k=16, tau=0.1, coarsen=3)
    values = torch.from_numpy(np.random.default_rng(3).normal(size=(len(centers), 5))).float()
    cpu = build_pooling_graph(centers, embedding, config, cell_size=VOXEL).pool(values, 8)
    gpu = build_pooling_graph(torch.from_numpy(centers).cuda(), embedding.cuda(), config, cell_size=VOXEL).pool(
        values.cuda(), 8
    )
    assert torch.allclose(cpu, gpu.cpu(), atol=1e-4)
