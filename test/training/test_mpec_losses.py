"""Each MPEC loss against a small case computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from ov3d_training.mpec.losses import (
    entity_to_text_loss,
    point_to_entity_logits,
    point_to_entity_loss,
    point_to_entity_terms,
    retrieval_accuracy,
    text_to_entity_loss,
)


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


# three points; points 0 and 1 are entity 1, point 2 is background (entity 0)
U = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
V = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
ENTITY = torch.tensor([1, 1, 0])


def test_point_to_entity_loss_matches_hand_computation():
    # u -> v (tau 0.5): prototypes in v: background (0, 1), entity 1 mean((1,0),(1,0)) = (1, 0)
    #   p0 logits (0, 2) target 1; p1 (2, 0) target 1; p2 (0, -2) target 0
    u_to_v = (2 * math.log1p(math.exp(-2)) + math.log1p(math.exp(2))) / 3
    # v -> u: prototypes in u: background (-1, 0), entity 1 mean((1,0),(0,1)) = (0.5, 0.5)
    #   v0 logits (-2, 1) target 1; v1 the same; v2 (0, 1) target 0
    v_to_u = (2 * math.log1p(math.exp(-3)) + math.log1p(math.e)) / 3
    expected = 0.5 * (u_to_v + v_to_u)
    got = point_to_entity_loss(U, V, ENTITY, num_entities=2, temperature=0.5)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # cosine: the features' scale does not matter
    scaled = point_to_entity_loss(3.0 * U, 0.5 * V, ENTITY, num_entities=2, temperature=0.5)
    assert scaled.item() == pytest.approx(expected, rel=1e-6)


def test_point_to_entity_similarity_is_mean_cosine_over_the_entity():
    torch.manual_seed(0)
    a, b = torch.randn(7, 5), torch.randn(7, 5)
    entity = torch.tensor([0, 1, 1, 2, 2, 2, 1])
    logits = point_to_entity_logits(a, b, entity, 3, temperature=1.0)
    cos = torch.nn.functional.normalize(a, dim=1) @ torch.nn.functional.normalize(b, dim=1).T
    for k in range(3):
        members = entity == k
        assert torch.allclose(logits[:, k], cos[:, members].mean(dim=1), atol=1e-6)


def test_absent_entity_is_never_a_candidate_and_accuracy_counts_both_directions():
    entity = torch.tensor([1, 1, 2])  # no background point, entity ids 1..2 of 3 slots
    logits = point_to_entity_logits(U, V, entity, 3, temperature=0.5)
    assert torch.isinf(logits[:, 0]).all() and (logits[:, 0] < 0).all()
    loss, accuracy = point_to_entity_terms(U, V, entity, 3, temperature=0.5)
    assert torch.isfinite(loss)
    # u->v: prototypes e1 = (1,0), e2 = (0,1): p0 -> e1 (right), p1 -> e2 (wrong), p2 (-1,0) -> e2 (right)
    # v->u: prototypes e1 = (0.5,0.5), e2 = (-1,0): v0 -> e1, v1 -> e1 (right, right), v2 -> e1 (wrong)
    assert accuracy.item() == pytest.approx(2 / 3)


def test_point_to_entity_rejects_mismatched_views():
    with pytest.raises(ValueError, match="same points"):
        point_to_entity_loss(U, V[:2], ENTITY, 2)


E = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # two entities
T = torch.tensor([[1.0, 0.0], [1.0, 1.0]])  # text 0 names entity 0; text 1 names both
MATCH = torch.tensor([[True, False], [True, True]])


def test_text_to_entity_cross_entropy_with_multi_positive_target():
    # tau 1: text 0 logits (1, 0) target entity 0; text 1 logits (1/sqrt2, 1/sqrt2), target (1/2, 1/2)
    expected = (math.log1p(math.exp(-1)) + math.log(2)) / 2
    assert text_to_entity_loss(E, T, MATCH, temperature=1.0).item() == pytest.approx(expected, rel=1e-6)


def test_text_to_entity_needs_a_positive_per_text():
    with pytest.raises(ValueError, match="at least one entity"):
        text_to_entity_loss(E, T, torch.tensor([[True, False], [False, False]]))


def test_entity_to_text_binary_cross_entropy():
    b, c = -0.5, 1 / math.sqrt(2)
    # logits (entity, text) = cos / tau + b with tau 1; targets: e0 named by t0 and t1, e1 by t1 only
    pairs = [(1 + b, 1), (c + b, 1), (0 + b, 0), (c + b, 1)]
    expected = sum(softplus(x) - y * x for x, y in pairs) / 4
    got = entity_to_text_loss(E, T, MATCH, temperature=1.0, bias=b)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # a learnable bias gets a gradient
    bias = torch.tensor(b, requires_grad=True)
    entity_to_text_loss(E, T, MATCH, temperature=1.0, bias=bias).backward()
    assert bias.grad is not None and bias.grad.abs().item() > 0


def test_retrieval_accuracy():
    # text 0 -> entity 0 (named: right); text 1 ties -> entity 0 (named: right)
    # entity 0 -> text 0 (cos 1; its text: right); entity 1 -> text 1 (its text: right)
    assert retrieval_accuracy(E, T, MATCH) == (1.0, 1.0)
    wrong = torch.tensor([[False, True], [True, True]])  # text 0 names entity 1 only
    t2e, e2t = retrieval_accuracy(E, T, wrong)
    assert t2e == 0.5  # text 0 retrieves entity 0: wrong
    assert e2t == 0.5  # entity 0 retrieves text 0 (not its own): wrong; entity 1 retrieves text 1: right
