"""Query scoring: candidates, labels and scores, the factored semantic field, logit vs feature path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ov3d_ros.core.geometry import geometric_embedding
from ov3d_ros.core.ggp import GGPConfig, build_pooling_graph
from ov3d_ros.core.query import (
    CANONICAL_NEGATIVES,
    DenseSemantic,
    LowRankSemantic,
    build_candidates,
    decide,
    score_features,
)
from ov3d_ros.core.types import MAX_QUERY_CHARS, QueryError, QuerySet


# ------------------------------------------------------------------------------------ queries
@pytest.mark.parametrize(
    "text, reason",
    [
        ("", "no query"),
        (" ;  ; ", "no query"),
        ("chair; \x07bell", "control characters"),
        ("\x1b[31mred mug", "control characters"),
        ("x" * (MAX_QUERY_CHARS + 1), "characters; at most"),
        ("!!!", "no letters or digits"),
        ("chair; ...", "no letters or digits"),
        ("chair; chair", "duplicate"),
    ],
)
def test_bad_queries_raise_query_error(text, reason):
    with pytest.raises(QueryError, match=reason):
        QuerySet.parse(text)


def test_unicode_queries_are_accepted_and_whitespace_normalized():
    queries = QuerySet.parse("café table;  Stuhl ; 椅子; red \t  mug")
    assert queries.positives == ("café table", "Stuhl", "椅子", "red mug")


def test_candidates_order_and_deduplication():
    queries = QuerySet.parse("chair; Object", negatives="table; chair", background=True)
    candidates = build_candidates(queries)
    # positives first; the negative "chair" and the canonical "object" repeat positives: dropped
    assert candidates.names == ("chair", "Object", "table", "things", "stuff", "texture")
    assert candidates.num_positives == 2 and candidates.positives == ("chair", "Object")
    plain = build_candidates(QuerySet.parse("chair", background=False))
    assert plain.names == ("chair",)
    assert set(CANONICAL_NEGATIVES) <= set(build_candidates(QuerySet.parse("lamp")).names)


# ------------------------------------------------------------------------------------- decide
def test_decide_labels_and_scores_by_hand():
    # candidates: 2 positives, 1 negative
    logits = torch.tensor(
        [
            [0.9, 0.1, 0.0],  # positive 0 wins
            [0.2, 0.8, 0.1],  # positive 1 wins
            [0.3, 0.2, 0.7],  # negative wins -> background
            [0.5, 0.5, 0.0],  # tie between positives -> first
        ]
    )
    temperature = 0.1
    decision = decide(logits, num_positives=2, temperature=temperature)
    assert decision.semantic.tolist() == [1, 2, 0, 1]
    probs = torch.softmax(logits / temperature, dim=1)
    np.testing.assert_allclose(decision.score.numpy(), probs[:, :2].max(dim=1).values.numpy(), rtol=1e-6)
    assert decision.semantic.dtype == torch.int32 and decision.score.dtype == torch.float32

    # a threshold between the first two scores turns the weaker positive into background
    cut = float(probs[1, 1] + probs[0, 0]) / 2
    thresholded = decide(logits, 2, temperature, threshold=cut)
    expected = [1 if probs[0, 0] >= cut else 0, 2 if probs[1, 1] >= cut else 0, 0, 1 if probs[3, 0] >= cut else 0]
    assert thresholded.semantic.tolist() == expected
    assert decide(logits, 2, temperature, threshold=1.01).semantic.tolist() == [0, 0, 0, 0]


def test_decide_rejects_bad_arguments():
    with pytest.raises(ValueError, match="num_positives"):
        decide(torch.zeros(3, 2), num_positives=3, temperature=0.1)
    with pytest.raises(ValueError, match="temperature"):
        decide(torch.zeros(3, 2), num_positives=1, temperature=0.0)


# ------------------------------------------------------------------------------ semantic fields
def test_low_rank_field_equals_dense_unit_features():
    torch.manual_seed(0)
    layer = torch.nn.Linear(16, 384)
    hidden = torch.randn(500, 16)
    field = LowRankSemantic.from_linear(hidden, layer)
    dense_unit = torch.nn.functional.normalize(layer(hidden).detach(), dim=1)
    np.testing.assert_allclose(field.features().numpy(), dense_unit.numpy(), atol=1e-5)
    np.testing.assert_allclose(field.inv_norm.numpy(), 1 / layer(hidden).detach().norm(dim=1).numpy(), rtol=1e-5)
    text = torch.nn.functional.normalize(torch.randn(7, 384), dim=1)
    np.testing.assert_allclose(field.logits(text).numpy(), DenseSemantic(dense_unit).logits(text).numpy(), atol=1e-5)
    assert field.dim == 384 and field.num_voxels == 500


def test_low_rank_field_zero_output_has_zero_logits():
    layer = torch.nn.Linear(4, 8)
    with torch.no_grad():
        layer.weight.zero_()
        layer.bias.zero_()
    field = LowRankSemantic.from_linear(torch.randn(5, 4), layer)
    assert torch.equal(field.inv_norm, torch.zeros(5))
    assert torch.equal(field.logits(torch.randn(3, 8)), torch.zeros(5, 3))


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_centered_fields_remove_the_mean_and_stay_unit(alpha):
    """centered(alpha) == normalise(s_i - alpha * mean s), factored and dense alike."""
    torch.manual_seed(2)
    layer = torch.nn.Linear(16, 64)
    with torch.no_grad():
        layer.bias.add_(1.0)  # a large shared component, as the real student's features have
    hidden = torch.randn(300, 16)
    field = LowRankSemantic.from_linear(hidden, layer)
    unit = torch.nn.functional.normalize(layer(hidden).detach(), dim=1)
    expected = torch.nn.functional.normalize(unit - alpha * unit.mean(dim=0), dim=1)
    np.testing.assert_allclose(field.mean().numpy(), unit.mean(dim=0).numpy(), atol=1e-5)
    centered = field.centered(alpha)
    assert isinstance(centered, LowRankSemantic)
    assert centered.rank == field.rank + (alpha > 0)  # one channel more, still factored
    np.testing.assert_allclose(centered.features().numpy(), expected.numpy(), atol=1e-5)
    text = torch.nn.functional.normalize(torch.randn(5, 64), dim=1)
    np.testing.assert_allclose(centered.logits(text).numpy(), (expected @ text.T).numpy(), atol=1e-5)
    np.testing.assert_allclose(DenseSemantic(unit).centered(alpha).features().numpy(), expected.numpy(), atol=1e-5)
    if alpha > 0:  # the shared part really goes: the mean cosine between voxels drops
        assert float(centered.features().mean(dim=0).norm()) < float(unit.mean(dim=0).norm()) - 0.15


def test_centering_keeps_zero_rows_and_empty_fields():
    dense = DenseSemantic(torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.6, 0.8]]), dim=1))
    assert torch.equal(dense.centered(0.5).features()[1], torch.zeros(2))
    layer = torch.nn.Linear(4, 8)
    with torch.no_grad():
        layer.weight.zero_()
        layer.bias.zero_()
    zero = LowRankSemantic.from_linear(torch.randn(5, 4), layer).centered(0.5)
    assert torch.equal(zero.logits(torch.randn(3, 8)), torch.zeros(5, 3))
    empty = DenseSemantic(torch.zeros((0, 8)))
    assert empty.centered(0.5) is empty


def test_logit_pooling_and_feature_pooling_give_identical_labels(scannet_npz):
    """GGP on the (V, Q) logits == GGP on the (V, D) features, then scoring (real geometry)."""
    data = np.load(scannet_npz)
    xyz = data["xyz"]
    crop = (np.abs(xyz[:, 0] - xyz[:, 0].mean()) < 0.8) & (np.abs(xyz[:, 1] - xyz[:, 1].mean()) < 0.8)
    positions = torch.from_numpy(xyz[crop][:4000])
    rng = torch.Generator().manual_seed(1)
    affinity = geometric_embedding(positions)  # smooth along surfaces, as a trained head should be
    graph = build_pooling_graph(positions, affinity, GGPConfig(k=12, iterations=6))

    layer = torch.nn.Linear(16, 384)
    field = LowRankSemantic.from_linear(torch.randn(len(positions), 16, generator=rng), layer)
    queries = QuerySet.parse("chair; table; lamp")
    candidates = build_candidates(queries)
    text = torch.nn.functional.normalize(torch.randn(len(candidates.names), 384, generator=rng), dim=1)

    via_logits = decide(graph.pool(field.logits(text), 6), candidates.num_positives, 0.05)
    via_features = score_features(graph.pool(field.features(), 6), text, candidates, 0.05, None)
    assert torch.equal(via_logits.semantic, via_features.semantic)
    np.testing.assert_allclose(via_logits.score.numpy(), via_features.score.numpy(), atol=1e-4)
    # and pooling did something: labels differ from the unpooled ones somewhere
    raw = decide(field.logits(text), candidates.num_positives, 0.05)
    assert not torch.equal(raw.semantic, via_logits.semantic)

    # pooling the factored field once (rank + 1 channels) gives the same logits for any text
    pooled_field = field.pooled(lambda values: graph.pool(values, 6))
    np.testing.assert_allclose(pooled_field.logits(text).numpy(), graph.pool(field.logits(text), 6).numpy(), atol=1e-5)
    np.testing.assert_allclose(pooled_field.features().numpy(), graph.pool(field.features(), 6).numpy(), atol=1e-5)
    via_field = decide(pooled_field.logits(text), candidates.num_positives, 0.05)
    assert torch.equal(via_field.semantic, via_logits.semantic)
