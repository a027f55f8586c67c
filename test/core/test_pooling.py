"""Geometry-guided pooling: equal to GeoPurify's formulation, order-invariant, and it does its job.

"Does its job" is tested on real scans with an affinity embedding made from the data alone
(``geometric_embedding``: sign-free normal products, colour, height), standing in for the
trained affinity head. It is geometric because its cosine similarity only says "same smooth
surface, same colour, same height" -- it knows nothing about classes -- so any gain in label
quality comes from pooling along the geometry, which is what GGP is for.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from ov3d_ros.bench.ggp_reference import reference_ggp, reference_knn
from ov3d_ros.core.geometry import geometric_embedding
from ov3d_ros.core.ggp import (
    GGPConfig,
    affinity_weights,
    build_pooling_graph,
    distance_weights,
    geometry_guided_pooling,
)
from ov3d_ros.core.neighbors import knn_voxels
from ov3d_ros.core.voxel import voxelize
from ov3d_ros.io.files import load_scan

# ScanNet-20 benchmark classes as NYU40 ids (shared/data/README.md)
SCANNET20 = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 24, 28, 33, 34, 36, 39]


@pytest.fixture(scope="module")
def room(scannet_npz):
    data = np.load(scannet_npz)
    lut = np.full(41, -1)
    lut[SCANNET20] = np.arange(len(SCANNET20))
    return data["xyz"], data["rgb"], lut[data["sem_nyu40"]]


def _corner(xyz, rgb, labels):
    keep = (xyz[:, 0] < -1.2) & (xyz[:, 1] < 0.3)  # ~15k points: the reference stays quick
    return xyz[keep], rgb[keep], labels[keep]


@pytest.mark.parametrize("weights", ["affinity", "distance", "uniform"])
def test_fast_ggp_equals_the_plain_reference_on_a_real_scan(room, weights):
    xyz, rgb, _ = _corner(*room)
    v = voxelize(xyz, 0.02, colors=rgb)
    embedding = geometric_embedding(v.centers, v.colors)
    features = np.random.default_rng(0).normal(size=(v.num_voxels, 24)).astype(np.float32)
    config = GGPConfig(k=16, tau=0.05, iterations=10, weights=weights)
    graph = build_pooling_graph(v.centers, embedding, config)
    reference = reference_ggp(
        features,
        embedding.numpy(),
        v.centers,
        config.k,
        config.tau,
        config.iterations,
        include_self=True,
        weights=weights,
        exact_distances=True,
    ).pooled.numpy()
    for method in ("auto", "scipy", "csr", "gather"):
        fast = graph.pool(torch.from_numpy(features), config.iterations, method=method).numpy()
        assert np.abs(fast - reference).max() < 1e-4, method
    direct = geometry_guided_pooling(torch.from_numpy(features), graph.neighbors, graph.weights, config.iterations)
    assert np.abs(direct.numpy() - reference).max() < 1e-4


def test_paper_setting_is_geopurifys_code_and_the_fast_path_computes_it(room):
    """GGPConfig.paper() runs what GeoPurify's released code runs: 96 neighbours without the voxel
    itself, softmax(cos / 0.05), 19 products. The fast path equals the reference at that setting,
    and the reference's own float32 brute-force search finds neighbours as near as the k-d tree."""
    paper = GGPConfig.paper()
    assert (paper.k, paper.tau, paper.iterations, paper.include_self, paper.coarsen) == (96, 0.05, 19, False, 1)
    xyz, rgb, _ = _corner(*room)
    v = voxelize(xyz, 0.05, colors=rgb)  # ~1.5k voxels: 96 neighbours reach across the corner
    embedding = geometric_embedding(v.centers, v.colors)
    features = np.random.default_rng(3).normal(size=(v.num_voxels, 12)).astype(np.float32)
    graph = build_pooling_graph(v.centers, embedding, paper)
    assert graph.neighbors.shape == (v.num_voxels, 96)
    assert not (graph.neighbors == torch.arange(v.num_voxels)[:, None]).any()  # the voxel is not its own neighbour
    reference = reference_ggp(
        features,
        embedding.numpy(),
        v.centers,
        paper.k,
        paper.tau,
        paper.iterations,
        include_self=paper.include_self,
        exact_distances=True,
    )
    fast = graph.pool(torch.from_numpy(features), paper.iterations)
    np.testing.assert_allclose(fast.numpy(), reference.pooled.numpy(), atol=1e-4)
    geopurify = reference_knn(v.centers, paper.k, include_self=False)  # the matrix-product search, as timed
    tree = knn_voxels(v.centers, paper.k, include_self=False)
    assert not (geopurify.indices == torch.arange(v.num_voxels)[:, None]).any()
    # float32 x^2 + y^2 - 2xy rounds distances by up to ~1e-7 |x|^2 / d: well below a millimetre here
    np.testing.assert_allclose(np.sort(geopurify.distances.numpy(), axis=1), np.sort(tree.distances, axis=1), atol=1e-3)


def test_pool_stages_continue_from_the_last_stage_and_match_pooling_from_scratch(room):
    """A sweep over T (the report and the calibration) pools each stage on from the last one."""
    xyz, rgb, _ = _corner(*room)
    v = voxelize(xyz, 0.05, colors=rgb)
    features = torch.from_numpy(np.random.default_rng(2).normal(size=(v.num_voxels, 8)).astype(np.float32))
    graph = build_pooling_graph(v.centers, geometric_embedding(v.centers, v.colors), GGPConfig(k=8, tau=0.1))
    stages = list(graph.pool_stages(features, [8, 0, 3, 8]))
    assert [t for t, _ in stages] == [0, 3, 8]  # sorted, repeats once
    for t, pooled in stages:
        np.testing.assert_allclose(pooled.numpy(), graph.pool(features, t).numpy(), atol=1e-5)
    assert not np.allclose(stages[1][1].numpy(), stages[2][1].numpy())
    with pytest.raises(ValueError, match="iterations must be >= 0"):
        list(graph.pool_stages(features, [-1, 2]))


def _segment_room(xyz, rgb, config):
    """Voxelise -> geometric embedding -> GGP of per-voxel values -> per-point output."""
    v = voxelize(xyz, 0.02, colors=rgb)
    values = np.column_stack([v.centers, v.colors, np.sin(7 * v.centers)]).astype(np.float32)
    graph = build_pooling_graph(v.centers, geometric_embedding(v.centers, v.colors), config)
    return v.to_points(graph.pool(torch.from_numpy(values), config.iterations).numpy())


def test_ggp_is_invariant_to_point_order(room):
    xyz, rgb, _ = room
    perm = np.random.default_rng(11).permutation(len(xyz))
    config = GGPConfig()
    original = _segment_room(xyz, rgb, config)
    permuted = _segment_room(xyz[perm], rgb[perm], config)
    np.testing.assert_allclose(permuted, original[perm], atol=1e-6)


def test_logit_path_gives_the_feature_path_labels(room):
    """Pool Q logits instead of D features: identical labels (see the ov3d_ros.core.ggp package doc)."""
    xyz, rgb, _ = _corner(*room)
    v = voxelize(xyz, 0.02, colors=rgb)
    rng = np.random.default_rng(4)
    text = torch.nn.functional.normalize(torch.from_numpy(rng.normal(size=(12, 64)).astype(np.float32)), dim=1)
    owner = rng.integers(0, 12, v.num_voxels)
    noise = torch.randn(v.num_voxels, 64, generator=torch.Generator().manual_seed(0))
    features = torch.nn.functional.normalize(text[owner] + 0.8 * noise, dim=1)
    graph = build_pooling_graph(v.centers, geometric_embedding(v.centers, v.colors), GGPConfig())
    pooled_features = graph.pool(features, 12)
    pooled_logits = graph.pool(features @ text.T, 12)
    np.testing.assert_allclose(pooled_logits, pooled_features @ text.T, atol=1e-5)
    cosine = torch.nn.functional.normalize(pooled_features, dim=1) @ text.T
    top2 = torch.topk(cosine, 2, dim=1).values
    clear = (top2[:, 0] - top2[:, 1]) > 1e-4  # float rounding may only flip exact near-ties
    assert clear.float().mean() > 0.99
    assert torch.equal(pooled_logits.argmax(1)[clear], cosine.argmax(1)[clear])


def _miou(pred: np.ndarray, truth: np.ndarray) -> float:
    valid = truth >= 0
    ious = [
        ((pred == c) & (truth == c)).sum() / ((pred == c) & valid | (truth == c)).sum() for c in np.unique(truth[valid])
    ]
    return float(np.mean(ious))


def test_ggp_restores_corrupted_class_features_on_scannet(room):
    """One-hot ScanNet-20 labels with the errors a 2D-lifted model makes -- labels bled across
    boundaries, wrong-class blobs, noise -- are repaired by pooling along the geometry."""
    xyz, rgb, labels = room
    v = voxelize(xyz, 0.02, colors=rgb)
    total, classes = v.num_voxels, len(SCANNET20)
    votes = np.bincount(v.point_to_voxel[labels >= 0] * classes + labels[labels >= 0], minlength=total * classes)
    votes = votes.reshape(total, classes)
    truth = np.where(votes.sum(1) > 0, votes.argmax(1), -1)
    rng = np.random.default_rng(0)
    noisy = truth.copy()
    near = knn_voxels(v.centers, 32).indices  # bleed: 30% take a random label from within ~6 cm
    bleed = rng.random(total) < 0.3
    noisy[bleed] = truth[near[bleed, rng.integers(0, 32, bleed.sum())]]
    seeds = rng.choice(total, total // 100, replace=False)  # blobs of 5-15 cm get a random class
    radius, blob_class = rng.uniform(0.05, 0.15, len(seeds)), rng.integers(0, classes, len(seeds))
    dist, blob = cKDTree(v.centers[seeds]).query(v.centers)
    noisy[dist < radius[blob]] = blob_class[blob[dist < radius[blob]]]
    onehot = np.zeros((total, classes), np.float32)
    onehot[np.flatnonzero(noisy >= 0), noisy[noisy >= 0]] = 1
    features = torch.from_numpy(onehot + rng.normal(0, 0.3, onehot.shape).astype(np.float32))

    embedding = geometric_embedding(v.centers, v.colors)

    def pooled_miou(config: GGPConfig) -> float:
        pooled = build_pooling_graph(v.centers, embedding, config).pool(features, config.iterations)
        return _miou(v.to_points(pooled.argmax(1).numpy()), labels)

    before = _miou(v.to_points(features.argmax(1).numpy()), labels)
    after = pooled_miou(GGPConfig())  # the shipped defaults
    uniform = pooled_miou(GGPConfig(weights="uniform"))
    assert after > before + 0.15, (before, after)
    assert after > uniform + 0.02, (uniform, after)  # the affinities, not just smoothing, help


def test_pooled_labels_stay_within_object_boundaries_on_mosd(mosd_pcds):
    """mOSD objects on a table: 2D-style masks bleed each object's label onto the table around
    it. Pooling with geometric affinities (normals and colour; the clouds are in a camera frame,
    so no height term) pulls the labels back inside the objects."""
    precision = {"unpooled": [], "affinity": [], "uniform": []}
    for path in mosd_pcds[::3]:
        scan = load_scan(path)
        ids = np.unique(scan.instances[scan.instances >= 10])  # >= 10: one object each
        truth_points = np.searchsorted(ids, scan.instances) + 1
        truth_points[scan.instances < 10] = 0  # table and support
        v = voxelize(scan.points, 0.01, colors=scan.colors)
        votes = np.bincount(v.point_to_voxel * (len(ids) + 1) + truth_points, minlength=v.num_voxels * (len(ids) + 1))
        truth = votes.reshape(v.num_voxels, -1).argmax(1)
        rng = np.random.default_rng(1)
        objects = np.flatnonzero(truth > 0)
        dist, nearest = cKDTree(v.centers[objects]).query(v.centers)
        bleed = (truth == 0) & (dist < 0.03) & (rng.random(v.num_voxels) < 0.7)
        noisy = truth.copy()
        noisy[bleed] = truth[objects[nearest[bleed]]]
        onehot = np.eye(len(ids) + 1, dtype=np.float32)[noisy]
        features = torch.from_numpy(onehot + rng.normal(0, 0.3, onehot.shape).astype(np.float32))
        embedding = geometric_embedding(v.centers, v.colors, height_scale=None)

        def object_precision(voxel_label: torch.Tensor) -> float:
            label = v.to_points(voxel_label.numpy())
            object_ids = range(1, len(ids) + 1)
            per_object = [((label == o) & (truth_points == o)).sum() / max((label == o).sum(), 1) for o in object_ids]
            return float(np.mean(per_object))

        precision["unpooled"].append(object_precision(features.argmax(1)))
        for weights in ("affinity", "uniform"):
            config = GGPConfig(weights=weights)
            graph = build_pooling_graph(v.centers, embedding, config)
            precision[weights].append(object_precision(graph.pool(features, config.iterations).argmax(1)))
    unpooled, pooled = np.array(precision["unpooled"]), np.array(precision["affinity"])
    assert np.all(pooled > unpooled + 0.1), precision
    assert pooled.mean() > np.mean(precision["uniform"]), precision


def test_affinity_weights_follow_the_formula_and_the_given_neighbor_order():
    embeddings = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 3.0], [1.0, 1.0]])
    neighbors = torch.tensor([[0, 3, 1], [1, 0, 2], [2, 3, 0], [3, 2, 1]])
    weights = affinity_weights(embeddings, neighbors, tau=0.5)
    unit = torch.nn.functional.normalize(embeddings, dim=1)
    cosine = (unit[neighbors] * unit[:, None, :]).sum(-1)
    expected = torch.exp(cosine / 0.5) / torch.exp(cosine / 0.5).sum(1, keepdim=True)
    torch.testing.assert_close(weights, expected)
    torch.testing.assert_close(weights.sum(1), torch.ones(4))
    sharp = affinity_weights(embeddings, neighbors, tau=1e-3)  # small tau: all weight on the most similar
    assert sharp[0, 0] + sharp[0, 2] > 0.999  # voxels 0 and 1 point the same way


def test_distance_weights_fall_off_with_distance():
    distances = torch.tensor([[0.0, 0.01, 0.02, 0.04]])
    weights = distance_weights(distances, sigma=0.02)
    assert torch.all(weights[0, :-1] > weights[0, 1:])
    torch.testing.assert_close(weights.sum(1), torch.ones(1))


def test_config_defaults_validation_and_edge_cases():
    assert GGPConfig.paper() == GGPConfig(k=96, tau=0.05, iterations=19, include_self=False)
    assert GGPConfig.paper(iterations=4).iterations == 4
    for bad in (
        {"k": 0},
        {"tau": 0.0},
        {"iterations": -1},
        {"weights": "learned"},
        {"include_self": False, "coarsen": 2},
    ):
        with pytest.raises(ValueError):
            GGPConfig(**bad)
    with pytest.raises(TypeError):
        GGPConfig(include_self="no")
    # a record names include_self only when the voxel is left out: older records read unchanged
    assert "include_self" not in GGPConfig().record()
    assert GGPConfig.paper().record()["include_self"] is False
    assert GGPConfig.from_record(GGPConfig.paper().record()) == GGPConfig.paper()
    centers = np.random.default_rng(0).random((5, 3)).astype(np.float32)  # fewer voxels than k
    graph = build_pooling_graph(centers, torch.ones(5, 8), GGPConfig(k=24))  # equal affinities
    assert graph.neighbors.shape == (5, 5)
    values = torch.randn(5, 3)
    torch.testing.assert_close(graph.pool(values, 0), values)
    pooled = graph.pool(values, 50)  # connected, row-stochastic: converges towards a constant
    assert float((pooled - pooled.mean(0)).abs().max()) < 0.05 * float(values.abs().max())
    with pytest.raises(ValueError, match="values"):
        graph.pool(torch.randn(4, 3), 1)
    with pytest.raises(ValueError, match="embeddings"):
        build_pooling_graph(centers, None, GGPConfig())


def test_ggp_benchmark_runs_and_checks_its_outputs(scannet_npz):
    """The benchmark's own correctness checks on a small V (its timings are not asserted), at the
    packaged model's GGP setting (cells) and at GeoPurify's."""
    from ov3d_ros.bench.ggp_bench import run, shipped_config

    shipped = shipped_config()
    result = run(scannet_npz, num_points=5000, num_voxels=3000, repeats=1)
    assert result["num_voxels"] == 3000 and result["num_points"] == 5000
    assert result["setting_shipped"] == shipped.record() and result["setting_paper"] == GGPConfig.paper().record()
    assert result["reference_outputs_equal"] and result["reference_max_abs_diff"] < 1e-4
    for setting in ("paper", "shipped"):
        assert result[f"reference_{setting}_max_abs_diff"] < 1e-4
        assert result[f"reference_{setting}_knn_max_distance_diff"] < 1e-3
    assert result["reference_feature_channels"] == 512 + 6
    assert result["logit_vs_feature_labels_equal"] == 1.0 and result["logit_vs_feature_max_abs_diff"] < 1e-4
    timings = (
        "knn_s",
        "weights_s",
        "pool_logits_s",
        "ggp_total_s",
        "ggp_total_paper_s",
        "reference_paper_s",
        "optimized_paper_s",
        "reference_shipped_s",
        "optimized_shipped_s",
    )
    assert all(result[key] > 0 for key in timings)
    assert result["ggp_speedup_vs_reference_paper"] > 0 and result["ggp_speedup_vs_reference_shipped"] > 0
