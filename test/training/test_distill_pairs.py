"""Pair mining and InfoNCE of the distillation: a hand-computed case, a loop reference, edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ov3d_ros.core.neighbors import knn_voxels
from ov3d_training.distill.config import PairConfig
from ov3d_training.distill.pairs import anchor_neighbors, info_nce, mine_pairs


def _unit_2d(degrees: list[float]) -> torch.Tensor:
    angles = torch.tensor(degrees, dtype=torch.float64) * math.pi / 180
    return torch.stack([torch.cos(angles), torch.sin(angles)], dim=1).float()


# teacher features on the unit circle: cos between voxels = cos of the angle between them
#   voxel:   0    1    2    3    4    5
ANGLES = [0.0, 30.0, 10.0, 90.0, 65.0, 180.0]
HAND_CONFIG = PairConfig(
    anchors=2,
    positive_candidates=3,
    hard_negative_neighbors=4,
    hard_negatives=3,
    global_negatives=2,
    negative_pool=6,
    margin=0.1,
)


def _hand_pairs():
    guide = _unit_2d(ANGLES)
    anchors = torch.tensor([0, 1])
    # spatial neighbours, nearest first (made up: only their order matters here)
    neighbors = torch.tensor([[1, 2, 3, 4], [2, 0, 4, 3]])
    pool = torch.arange(6)
    return mine_pairs(guide, anchors, neighbors, pool, HAND_CONFIG)


def test_pairs_hand_computed():
    pairs = _hand_pairs()
    # anchor 0 (0 deg): candidates 1, 2, 3 have cos .866, .985, 0 -> voxel 2, though voxel 1 is nearer
    # anchor 1 (30 deg): candidates 2, 0, 4 have cos .940, .866, .819 -> voxel 2
    assert pairs.positives.tolist() == [2, 2]
    assert pairs.positive_similarity.tolist() == pytest.approx(
        [math.cos(math.radians(10)), math.cos(math.radians(20))], abs=1e-6
    )
    assert pairs.num_global == 2
    # global: least similar of the pool without the anchor and the positive, most dissimilar first
    #   anchor 0: 5 (-1), 3 (0);  anchor 1: 5 (-.866), 3 (.5)
    # hard: least similar of the 4 nearest without the positive
    #   anchor 0: 3 (0), 4 (.423), 1 (.866);  anchor 1: 3 (.5), 4 (.819), 0 (.866)
    assert pairs.negatives.tolist() == [[5, 3, 3, 4, 1], [5, 3, 3, 4, 0]]
    # margin 0.1: anchor 1's threshold is .940 - .1 = .840, so voxel 0 (.866) is not a negative;
    # anchor 0's threshold is .885 and all of its negatives are below it
    assert pairs.valid.tolist() == [[True] * 5, [True, True, True, True, False]]


def test_info_nce_hand_computed():
    pairs = _hand_pairs()
    student = torch.tensor(
        [[1, 0, 0], [0, 1, 0], [0.6, 0.8, 0], [0, 0, 1], [0.8, 0, 0.6], [-1, 0, 0]], dtype=torch.float32
    )
    tau = 0.5
    # anchor 0: positive cos .6; negatives 5, 3, 3, 4, 1 have cos -1, 0, 0, .8, 0
    loss0 = -math.log(
        math.exp(0.6 / tau) / (math.exp(0.6 / tau) + math.exp(-1 / tau) + 3 * math.exp(0) + math.exp(0.8 / tau))
    )
    # anchor 1: positive cos .8; valid negatives 5, 3, 3, 4 all have cos 0 (voxel 0 is masked out)
    loss1 = -math.log(math.exp(0.8 / tau) / (math.exp(0.8 / tau) + 4 * math.exp(0)))
    result = info_nce(student, pairs, tau)
    assert float(result.loss) == pytest.approx((loss0 + loss1) / 2, rel=1e-5)
    assert result.used_anchors == 2
    assert result.accuracy == pytest.approx(0.5)  # anchor 0's negative 4 (.8) beats its positive (.6)


def _reference_pairs(guide, anchors, neighbors, pool, config):
    """Per-anchor loops over the rules in plain numpy (the spec, independent of the vectorised code)."""
    unit = guide / np.linalg.norm(guide, axis=1, keepdims=True)
    out = []
    for a, nb in zip(anchors, neighbors):
        sims = {int(j): float(unit[a] @ unit[j]) for j in set(nb.tolist()) | set(pool.tolist())}
        candidates = nb[: config.positive_candidates]
        positive = int(candidates[np.argmax([sims[int(j)] for j in candidates])])
        threshold = sims[positive] - config.margin
        pool_left = sorted((sims[int(j)], int(j)) for j in pool if j != a and j != positive)
        global_neg = [j for _, j in pool_left[: config.global_negatives]]
        local = [int(j) for j in nb[: config.hard_negative_neighbors] if j != positive]
        hard_neg = [j for _, j in sorted((sims[j], j) for j in local)[: config.hard_negatives]]
        negatives = global_neg + hard_neg
        out.append((positive, negatives, [sims[j] < threshold for j in negatives]))
    return out


def test_pairs_match_loop_reference_and_rules():
    rng = np.random.default_rng(3)
    centers = rng.uniform(0, 1, (400, 3)).astype(np.float32)
    guide = rng.normal(size=(400, 8)).astype(np.float32)
    config = PairConfig(
        anchors=60,
        positive_candidates=6,
        hard_negative_neighbors=20,
        hard_negatives=5,
        global_negatives=7,
        negative_pool=50,
        margin=0.05,
    )
    anchors = np.sort(rng.choice(400, 60, replace=False))
    neighbors = anchor_neighbors(centers, anchors, config.neighbors)
    pool = np.sort(rng.choice(400, 50, replace=False))
    pairs = mine_pairs(
        torch.from_numpy(guide), torch.from_numpy(anchors), torch.from_numpy(neighbors), torch.from_numpy(pool), config
    )
    reference = _reference_pairs(guide, anchors, neighbors, pool, config)
    assert pairs.positives.tolist() == [r[0] for r in reference]
    assert pairs.negatives.tolist() == [r[1] for r in reference]
    assert pairs.valid.tolist() == [r[2] for r in reference]
    # the rules, stated directly
    a = torch.from_numpy(anchors)
    assert not (pairs.positives == a).any(), "an anchor is never its own positive"
    assert not (pairs.negatives == a[:, None]).any(), "an anchor is never its own negative"
    assert not (pairs.negatives == pairs.positives[:, None]).any(), "the positive is never a negative"
    nb = torch.from_numpy(neighbors)
    assert (pairs.positives[:, None] == nb[:, : config.positive_candidates]).any(dim=1).all()
    hard = pairs.negatives[:, pairs.num_global :]
    assert (hard[:, :, None] == nb[:, None, : config.hard_negative_neighbors]).any(dim=2).all()
    assert torch.isin(pairs.negatives[:, : pairs.num_global], torch.from_numpy(pool)).all()


def test_info_nce_matches_loop_reference():
    rng = np.random.default_rng(4)
    guide = torch.from_numpy(rng.normal(size=(300, 6)).astype(np.float32))
    student = torch.from_numpy(rng.normal(size=(300, 16)).astype(np.float32)).requires_grad_(True)
    centers = rng.uniform(0, 1, (300, 3))
    anchors = np.arange(0, 300, 7)
    config = PairConfig(
        anchors=len(anchors),
        positive_candidates=4,
        hard_negative_neighbors=12,
        hard_negatives=4,
        global_negatives=6,
        negative_pool=64,
        margin=0.2,
    )
    pairs = mine_pairs(
        guide,
        torch.from_numpy(anchors),
        torch.from_numpy(anchor_neighbors(centers, anchors, 12)),
        torch.arange(0, 300, 4),
        config,
    )
    result = info_nce(student, pairs, 0.07)
    unit = torch.nn.functional.normalize(student.detach().double(), dim=1)
    losses, correct = [], []
    for i in range(len(pairs)):
        valid = pairs.negatives[i][pairs.valid[i]]
        if len(valid) == 0:
            continue
        pos = float(unit[pairs.anchors[i]] @ unit[pairs.positives[i]])
        negs = [float(unit[pairs.anchors[i]] @ unit[j]) for j in valid]
        logits = np.array([pos, *negs]) / 0.07
        losses.append(np.log(np.exp(logits - logits.max()).sum()) + logits.max() - logits[0])
        correct.append(pos > max(negs))
    assert result.used_anchors == len(losses) > 0
    assert float(result.loss.detach()) == pytest.approx(float(np.mean(losses)), rel=1e-4)
    assert result.accuracy == pytest.approx(float(np.mean(correct)))
    result.loss.backward()
    assert torch.isfinite(student.grad).all() and student.grad.abs().sum() > 0


def test_no_valid_negative_gives_zero_loss_with_gradient():
    guide = _unit_2d([0.0, 1.0, 2.0, 3.0])  # every voxel nearly identical in teacher space
    pairs = mine_pairs(
        guide,
        torch.tensor([0, 1]),
        torch.tensor([[1, 2], [0, 2]]),
        torch.arange(4),
        PairConfig(positive_candidates=1, hard_negative_neighbors=2, hard_negatives=1, global_negatives=2, margin=0.5),
    )
    assert not pairs.valid.any()
    student = torch.randn(4, 8, requires_grad=True)
    result = info_nce(student, pairs)
    assert result.used_anchors == 0 and float(result.loss.detach()) == 0.0
    result.loss.backward()  # still part of the graph (DDP needs every step to reach the parameters)
    assert student.grad is not None


def test_tiny_scans_clamp_instead_of_failing():
    guide = torch.randn(3, 4)
    neighbors = torch.from_numpy(anchor_neighbors(np.random.default_rng(0).random((3, 3)), np.array([0, 2]), 96))
    assert neighbors.shape == (2, 2)
    pairs = mine_pairs(guide, torch.tensor([0, 2]), neighbors, torch.arange(3), PairConfig())
    assert pairs.negatives.shape[0] == 2
    # fewer voxels than negatives asked for: the anchor and positive fill the rows but are masked out
    anchors = torch.tensor([[0], [2]])
    assert not ((pairs.negatives == anchors) & pairs.valid).any()
    assert not ((pairs.negatives == pairs.positives[:, None]) & pairs.valid).any()
    single = mine_pairs(
        torch.randn(1, 4), torch.tensor([0]), torch.zeros((1, 0), dtype=torch.long), torch.arange(1), PairConfig()
    )
    assert len(single) == 0
    assert float(info_nce(torch.randn(1, 8), single).loss) == 0.0


def test_anchor_neighbors_equal_knn_voxels():
    rng = np.random.default_rng(5)
    centers = rng.uniform(0, 2, (3000, 3)).astype(np.float32)
    anchors = np.sort(rng.choice(3000, 200, replace=False))
    mine = anchor_neighbors(centers, anchors, 24)
    full = knn_voxels(centers, 24, include_self=False, method="kdtree")
    assert mine.shape == (200, 24)
    np.testing.assert_array_equal(mine, full.indices[anchors])
    assert not (mine == anchors[:, None]).any()


def test_anchor_neighbors_never_lists_the_anchor_for_duplicate_points():
    centers = np.zeros((5, 3), np.float32)  # all coincident: self must still be removed by index
    out = anchor_neighbors(centers, np.array([0, 3]), 4)
    assert out.shape == (2, 4)
    assert sorted(out[0].tolist()) == [1, 2, 3, 4] and sorted(out[1].tolist()) == [0, 1, 2, 4]
