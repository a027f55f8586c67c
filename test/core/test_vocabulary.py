"""The one-query decision: the shipped vocabulary, its split by text cosine, the per-cloud summary,
the grouped decision, and the segmenter's two paths with the vocabulary (real model, real scan)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ov3d_ros.core.checkpoint import CheckpointError, read_metadata, record_query_rule
from ov3d_ros.core.query import DenseSemantic, QueryRule, decide, decide_groups
from ov3d_ros.core.segmenter import DEFAULT_CHECKPOINT, Segmenter
from ov3d_ros.core.text import load_text_encoder
from ov3d_ros.core.types import QuerySet
from ov3d_ros.core.vocabulary import (
    VocabularyError,
    VocabularySummary,
    field_block,
    load_vocabulary,
    read_vocabulary,
    split_vocabulary,
)
from ov3d_ros.io.files import load_scan


@pytest.fixture(scope="module")
def minilm():
    return load_text_encoder("minilm-l6-v2")


# ------------------------------------------------------------------------------- the file
def test_the_shipped_vocabulary_is_a_few_hundred_distinct_names():
    names = read_vocabulary()
    assert 200 <= len(names) <= 400
    assert len({n.casefold() for n in names}) == len(names)
    assert {"chair", "sofa", "table", "wall", "refrigerator", "lamp"} <= set(names)


def test_vocabulary_files_are_parsed_and_bad_ones_refused(tmp_path):
    path = tmp_path / "v.txt"
    path.write_text("# things\n\nchair\n  office   chair  # a comment\nChair\nmug\n")
    assert read_vocabulary(path) == ("chair", "office chair", "mug")
    path.write_text("chair\nbell\x07\n")
    with pytest.raises(VocabularyError, match=r"v.txt:2: .*control characters"):
        read_vocabulary(path)
    path.write_text("# nothing\n\n")
    with pytest.raises(VocabularyError, match="holds no names"):
        read_vocabulary(path)
    with pytest.raises(VocabularyError, match="cannot read"):
        read_vocabulary(tmp_path / "missing.txt")


def test_embeddings_are_memoised_per_encoder_and_kept_out_of_the_lru(minilm, tmp_path):
    path = tmp_path / "v.txt"
    path.write_text("couch\narmchair\ntoaster\n")
    misses = minilm.misses
    first = load_vocabulary(minilm, path)
    second = load_vocabulary(minilm, path)
    assert minilm.misses == misses  # encoded by the encoder behind the cache, not through it
    np.testing.assert_array_equal(first.embeddings.numpy(), second.embeddings.numpy())
    np.testing.assert_allclose(
        first.embeddings.numpy(), minilm.encoder.encode(["couch", "armchair", "toaster"]), atol=1e-6
    )
    assert first.sha256 == second.sha256 and len(first) == 3


# ------------------------------------------------------------------------------ the split
def test_split_by_cosine(minilm, tmp_path):
    names = ["couch", "armchair", "office chair", "toaster", "chair", "floor"]
    path = tmp_path / "v.txt"
    path.write_text("\n".join(names))
    vocabulary = load_vocabulary(minilm, path)
    positives = torch.from_numpy(minilm.encode(["sofa", "chair"]))
    cosine = (positives @ vocabulary.embeddings.T).numpy()  # (2, M)
    best, owner = cosine.max(axis=0), cosine.argmax(axis=0)
    rule = QueryRule(exclude=0.8, alias=0.6)
    split = split_vocabulary(vocabulary, positives, rule, taken=("sofa", "chair", "Floor"))
    # "chair" and "floor" are other candidates already (case-insensitive): out, whatever the cosine
    expected_out = {n for n, b in zip(names, best) if b >= 0.8} | {"chair", "floor"}
    expected_alias = {n: int(o) for n, b, o in zip(names, best, owner) if 0.6 <= b < 0.8 and n not in expected_out}
    assert set(split.excluded) == expected_out
    assert dict(zip(split.aliases, split.alias_owner.tolist())) == expected_alias
    assert split.removed.tolist() == [n in expected_out or n in expected_alias for n in names]
    assert "couch" in expected_out and "toaster" not in expected_out | set(expected_alias)  # the data behind the case
    no_alias = split_vocabulary(vocabulary, positives, QueryRule(exclude=0.8, alias=None), taken=())
    assert no_alias.aliases == () and set(no_alias.excluded) == {n for n, b in zip(names, best) if b >= 0.8}


def test_query_rule_is_validated_and_recorded():
    rule = QueryRule(exclude=0.85, alias=None, margin=0.02)
    assert QueryRule.from_record({**rule.record(), "calibration": {}}) == rule
    for bad in ({"exclude": 2.0}, {"alias": -3.0}, {"margin": 5.0}):
        with pytest.raises(ValueError):
            QueryRule(**bad)
    assert QuerySet(("chair",)).uses_vocabulary and not QuerySet(("chair",), background=False).uses_vocabulary
    assert QuerySet(("chair",), background=False, vocabulary=True).uses_vocabulary
    assert not QuerySet(("chair",), vocabulary=False).uses_vocabulary


# --------------------------------------------------------------------- summary and decision
def test_summary_gives_the_exact_competition(minilm):
    vocabulary = load_vocabulary(minilm)  # the shipped ~300 names
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    anchors = vocabulary.embeddings[rng.integers(0, len(vocabulary), 400)]
    field = DenseSemantic(torch.nn.functional.normalize(anchors + 0.05 * torch.randn(anchors.shape), dim=1))
    temperature = 0.05
    summary = VocabularySummary(field_block(field, vocabulary), field.num_voxels, len(vocabulary), temperature, top_k=4)
    full = field.logits(vocabulary.embeddings)
    removed = torch.zeros(len(vocabulary), dtype=torch.bool)
    removed[rng.choice(len(vocabulary), 40, replace=False)] = True
    removed[full[:50].argsort(dim=1, descending=True)[:, :4].flatten()] = True  # 50 voxels lose their whole top-4
    best, lse = summary.competition(removed, margin=0.03)
    kept = full[:, ~removed]
    torch.testing.assert_close(best, kept.max(dim=1).values - 0.03)
    torch.testing.assert_close(lse, torch.logsumexp((kept - 0.03) / temperature, dim=1), atol=1e-4, rtol=1e-5)
    assert summary.competition(torch.ones(len(vocabulary), dtype=torch.bool)) is None


def test_grouped_decision_by_hand():
    # columns: positives p0, p1; alias a (of p0)
    answer = torch.tensor([[0.9, 0.1, 0.2], [0.2, 0.3, 0.8], [0.1, 0.2, 0.3], [0.5, 0.6, 0.0]])
    owners = torch.tensor([0, 1, 0])
    others = torch.tensor([[0.0], [0.0], [0.9], [0.55]])
    vocab = torch.tensor([[0.5, 0.4], [0.1, 0.0], [0.2, 0.1], [0.7, 0.1]])  # explicit vocabulary logits
    t = 0.1
    competition = (vocab.max(dim=1).values, torch.logsumexp(vocab / t, dim=1))
    decision = decide_groups(answer, owners, others, t, None, competition)
    # row 0: p0 wins; row 1: the alias wins -> p0; row 2: the negative wins; row 3: the vocabulary wins
    assert decision.semantic.tolist() == [1, 1, 0, 0]
    probs = torch.softmax(torch.cat([answer, others, vocab], dim=1) / t, dim=1)
    group = torch.stack([probs[:, 0] + probs[:, 2], probs[:, 1]], dim=1)
    best_owner = owners[answer.argmax(dim=1)]
    torch.testing.assert_close(decision.score, group[torch.arange(4), best_owner])
    # without aliases or a summary it is the plain decision
    plain = torch.cat([answer[:, :2], others], dim=1)
    base = decide(plain, 2, t)
    grouped = decide_groups(plain[:, :2], torch.tensor([0, 1]), plain[:, 2:], t)
    assert torch.equal(base.semantic, grouped.semantic)
    torch.testing.assert_close(base.score, grouped.score)


# ------------------------------------------------------------ the segmenter, real model and scan
@pytest.fixture(scope="module")
def trained_crop(scannet_npz):
    segmenter = Segmenter.from_checkpoint(None, device="cpu")
    scan = load_scan(scannet_npz)
    center = np.median(scan.points[:, :2], axis=0)
    crop = scan.subset((np.abs(scan.points[:, :2] - center) < 1.5).all(axis=1))
    return segmenter, segmenter.process(crop)


@pytest.mark.parametrize(
    "rule", [QueryRule(), QueryRule(exclude=0.85, alias=0.55, margin=0.03), QueryRule(alias=None, margin=-0.02)]
)
def test_vocabulary_logit_path_equals_explicit_columns(trained_crop, rule):
    segmenter, processed = trained_crop
    for text in ("chair", "sofa; table", "red mug"):
        queries = QuerySet.parse(text, negatives="wall; floor; ceiling")
        fast, timings = segmenter.voxel_decision(processed, queries, rule=rule)
        explicit, _ = segmenter.voxel_decision(processed, queries, path="features", rule=rule)
        assert torch.equal(fast.semantic, explicit.semantic), text
        torch.testing.assert_close(fast.score, explicit.score, atol=2e-5, rtol=1e-4)
        assert "vocabulary_competition" in timings
        parts = segmenter.decision_parts(processed, queries, rule=rule)
        assert torch.equal(parts.decide().semantic, fast.semantic)


def test_vocabulary_changes_the_single_query_answer_and_is_summarized_once(trained_crop):
    segmenter, processed = trained_crop
    with_vocabulary = segmenter.query(processed, QuerySet.parse("chair"))
    summaries = dict(processed.vocabulary_summaries)
    without = segmenter.query(processed, QuerySet.parse("chair", vocabulary=False))
    segmenter.query(processed, QuerySet.parse("sofa"))
    assert processed.vocabulary_summaries == summaries and len(summaries) == 1  # once per cloud
    assert not np.array_equal(with_vocabulary.semantic, without.semantic)  # the vocabulary decides points


def test_calibrated_rule_is_recorded_and_used_by_default(tmp_path):
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(DEFAULT_CHECKPOINT, copy)
    rule = QueryRule(exclude=0.9, alias=0.65, margin=0.04)
    record_query_rule(copy, {**rule.record(), "calibration": {"scans": ["x"]}})
    assert read_metadata(copy).query_rule() == rule
    segmenter = Segmenter.from_checkpoint(copy, device="cpu")
    assert segmenter.config.query_rule == rule and segmenter.query_rule_calibrated
    with pytest.raises(CheckpointError, match="'query' must hold a valid"):
        record_query_rule(copy, {"exclude": "high"})
    assert read_metadata(copy).query_rule() == rule  # a refused record leaves the file as it was
