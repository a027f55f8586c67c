"""Segmenter: the whole inference path on a real ScanNet crop, with a random-init student (plumbing).

The student here is untrained, so these tests check contracts -- shapes, ids, consistency of the
two pooling paths, caching, errors -- never label quality.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ov3d_ros.core import segmenter as segmenter_module
from ov3d_ros.core.checkpoint import CheckpointMetadata, TextSpace, TextSpaceMismatchError, save_checkpoint
from ov3d_ros.core.features import MissingInputWarning
from ov3d_ros.core.network import StudentConfig, StudentNet
from ov3d_ros.core.segmenter import (
    InputFeatureError,
    ModelNotAvailableError,
    Segmenter,
    SegmenterConfig,
    UntrainedCheckpointError,
)
from ov3d_ros.core.text import MINILM_ID, MiniLMEncoder
from ov3d_ros.core.types import QueryError, QuerySet
from ov3d_ros.core.voxel import VoxelCapWarning
from ov3d_ros.io.files import load_scan
from ov3d_ros.io.scan import Scan


@pytest.fixture(scope="module")
def minilm() -> MiniLMEncoder:
    return MiniLMEncoder()


@pytest.fixture(scope="module")
def student() -> tuple[StudentNet, CheckpointMetadata]:
    torch.manual_seed(0)
    model = StudentNet(StudentConfig())
    metadata = CheckpointMetadata(
        architecture=model.config, text_space=TextSpace(MINILM_ID, 384), trained=False, training_data="random init"
    )
    return model, metadata


@pytest.fixture(scope="module")
def segmenter(student, minilm) -> Segmenter:
    model, metadata = student
    return Segmenter(model, metadata, minilm, SegmenterConfig(device="cpu"), allow_untrained=True)


@pytest.fixture(scope="module")
def crop(scannet_npz) -> Scan:
    """A 2.4 m x 2.4 m corner of the real ScanNet room (~10-20k points)."""
    scan = load_scan(scannet_npz)
    center = np.median(scan.points[:, :2], axis=0)
    inside = (np.abs(scan.points[:, :2] - center) < 1.2).all(axis=1)
    return scan.subset(inside)


@pytest.fixture(scope="module")
def processed(segmenter, crop):
    return segmenter.process(crop)


# ----------------------------------------------------------------------------------- loading
def test_missing_default_model_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(segmenter_module, "DEFAULT_CHECKPOINT", tmp_path / "default")
    with pytest.raises(ModelNotAvailableError, match="no trained model ships with this ov3d_ros yet"):
        Segmenter.from_checkpoint(None)


def test_untrained_checkpoint_is_refused_unless_allowed(student, minilm, tmp_path):
    model, metadata = student
    directory = save_checkpoint(tmp_path / "random", model, metadata)
    with pytest.raises(UntrainedCheckpointError, match="untrained \\(random\\) weights"):
        Segmenter.from_checkpoint(directory, device="cpu", text_encoder=minilm)
    with pytest.raises(UntrainedCheckpointError):
        Segmenter(model, metadata, minilm)
    loaded = Segmenter.from_checkpoint(directory, device="cpu", text_encoder=minilm, allow_untrained=True)
    assert loaded.device.type == "cpu" and not loaded.metadata.trained


class OtherSpace:
    encoder_id, dim, templates = "open_clip:ViT-B-32", 512, ("{}",)

    def encode(self, texts):
        raise AssertionError("never reached")


def test_text_encoder_from_another_space_is_refused(student):
    model, metadata = student
    with pytest.raises(TextSpaceMismatchError, match="trained against text encoder 'minilm-l6-v2'"):
        Segmenter(model, metadata, OtherSpace(), allow_untrained=True)


def test_cuda_request_without_cuda_is_a_clear_error(student, minilm):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    model, metadata = student
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        Segmenter(model, metadata, minilm, SegmenterConfig(device="cuda"), allow_untrained=True)


# -------------------------------------------------------------------------------- processing
def test_process_and_query_contract(segmenter, processed, crop):
    assert processed.num_points == len(crop) and 0 < processed.num_voxels <= len(crop)
    assert processed.feature_source == "student" and processed.graph is not None
    assert processed.semantic.num_voxels == processed.num_voxels and processed.semantic.dim == 384
    assert {"voxelize", "network", "ggp_graph", "total"} <= set(processed.timings)

    queries = QuerySet.parse("chair; table; sofa")
    result = segmenter.query(processed, queries)
    n = len(crop)
    assert result.semantic.shape == result.instance.shape == result.score.shape == (n,)
    assert result.semantic.dtype == np.int32 and result.instance.dtype == np.int32 and result.score.dtype == np.float32
    assert result.semantic.min() >= 0 and result.semantic.max() <= 3
    assert np.all((result.score >= 0) & (result.score <= 1))
    assert np.all(result.instance[result.semantic == 0] == 0)  # background points belong to no object
    for obj in result.objects:
        members = result.instance == obj.instance_id
        assert members.sum() == obj.num_points
        assert np.all(result.semantic[members] == obj.semantic_id)
        assert obj.query == queries.positives[obj.semantic_id - 1]
    assert {"text", "logits", "pooling", "decide", "objects", "to_points", "total"} <= set(result.timings)

    # per-point answers are the per-voxel ones mapped through point_to_voxel
    decision, _ = segmenter.voxel_decision(processed, queries)
    np.testing.assert_array_equal(result.semantic, decision.semantic.numpy()[processed.voxels.point_to_voxel])


@pytest.mark.parametrize("rank", [24, None], ids=["field-pooled-once", "logits-pooled-per-query"])
def test_logit_path_and_feature_path_agree(rank, minilm, crop):
    """Both GGP strategies (module doc of segmenter) against D-dim feature pooling."""
    torch.manual_seed(0)
    model = StudentNet(StudentConfig(semantic_rank=rank))
    metadata = CheckpointMetadata(architecture=model.config, text_space=TextSpace(MINILM_ID, 384), trained=False)
    segmenter = Segmenter(model, metadata, minilm, SegmenterConfig(device="cpu"), allow_untrained=True)
    processed = segmenter.process(crop)
    assert (processed.pooled is not None) == (rank is not None)
    queries = QuerySet.parse("chair; table; lamp", negatives="wall")
    via_logits = segmenter.query(processed, queries, path="logits")
    via_features = segmenter.query(processed, queries, path="features")
    np.testing.assert_array_equal(via_logits.semantic, via_features.semantic)
    np.testing.assert_allclose(via_logits.score, via_features.score, atol=1e-4)
    pooled = segmenter.pooled_features(processed)
    assert pooled.shape == (processed.num_voxels, 384)
    direct = processed.graph.pool(processed.semantic.features(), segmenter.config.ggp.iterations)
    np.testing.assert_allclose(pooled.numpy(), direct.numpy(), atol=1e-5)


def test_pooling_off_scores_the_raw_network_output(segmenter, processed):
    queries = QuerySet.parse("chair; table", background=False)
    raw, _ = segmenter.voxel_decision(processed, queries, pooling=False)
    text = torch.from_numpy(segmenter.text_encoder.encode(["chair", "table"]))
    expected = (processed.semantic.features() @ text.T).argmax(dim=1) + 1
    assert torch.equal(raw.semantic.long(), expected)


def test_requery_hits_the_text_cache(segmenter, processed):
    segmenter.query(processed, "red mug; trash can")
    hits, misses = segmenter.text_encoder.hits, segmenter.text_encoder.misses
    segmenter.query(processed, "trash can; red mug")
    assert segmenter.text_encoder.misses == misses
    assert segmenter.text_encoder.hits == hits + 6  # 2 positives + 4 canonical negatives


def test_requery_reuses_the_grid_and_finds_the_same_objects(segmenter, processed):
    import dataclasses

    first = segmenter.query(processed, "chair; table")
    edges = processed.grid_edges
    assert edges is not None  # built by the first query ...
    again = segmenter.query(processed, "chair; table")
    assert processed.grid_edges is edges  # ... and reused, not rebuilt
    fresh = segmenter.query(dataclasses.replace(processed, grid_edges=None), "chair; table")
    for result in (again, fresh):
        np.testing.assert_array_equal(result.instance, first.instance)
        assert [(o.query, o.num_points) for o in result.objects] == [(o.query, o.num_points) for o in first.objects]


def test_threshold_and_negatives(segmenter, processed):
    none = segmenter.query(processed, QuerySet.parse("chair", threshold=1.01))
    assert np.all(none.semantic == 0) and none.objects == []
    everything_negative = segmenter.query(
        processed, QuerySet(("chair",), negatives=("chair seat", "armchair", "stool"))
    )
    alone = segmenter.query(processed, QuerySet(("chair",), background=False))
    assert np.all(alone.semantic == 1) and np.all(alone.score == 1.0)  # nothing competes
    assert everything_negative.semantic.sum() <= alone.semantic.sum()


def test_bad_queries_raise_query_error(segmenter, processed):
    for text in ("", " ; ", "bell\x07", "?!", "x" * 500):
        with pytest.raises(QueryError):
            segmenter.query(processed, text)
    result = segmenter.query(processed, "café table; Stuhl")  # Unicode is legitimate text
    assert result.semantic.max() <= 2


# ---------------------------------------------------------------------------- settings per call
def test_settings_go_with_the_call_and_never_change_the_segmenter(student, minilm, segmenter, processed, crop):
    """A call's GGP setting, rule and object size are its own: the segmenter's defaults stay, and
    each call gives what a segmenter built with those settings gives."""
    import dataclasses

    from ov3d_ros.core.ggp import GGPConfig
    from ov3d_ros.core.query import QueryRule

    defaults = segmenter.config
    assert processed.ggp == defaults.ggp
    other_ggp = GGPConfig(k=8, tau=0.1, iterations=3, centering=0.5)
    other_rule = QueryRule(exclude=0.85, alias=0.55, margin=0.03)
    model, metadata = student
    built = Segmenter(
        model,
        metadata,
        minilm,
        SegmenterConfig(device="cpu", ggp=other_ggp, query_rule=other_rule, min_object_points=5),
        allow_untrained=True,
    )
    reference = built.process(crop)
    per_call = segmenter.process(crop, ggp=other_ggp)
    assert per_call.ggp == other_ggp and segmenter.config is defaults
    for text in ("chair", "chair; table"):
        asked = QuerySet.parse(text, negatives="wall", min_object_points=5)
        want = built.query(reference, asked)
        got = segmenter.query(per_call, asked, rule=other_rule)
        np.testing.assert_array_equal(got.semantic, want.semantic)
        np.testing.assert_array_equal(got.instance, want.instance)
        np.testing.assert_allclose(got.score, want.score, rtol=0, atol=1e-6)  # two network passes: float rounding
    assert segmenter.config is defaults and defaults.ggp != other_ggp and defaults.query_rule != other_rule
    # the object size is the query's: a smaller one reports at least the same objects
    small = segmenter.query(processed, QuerySet.parse("chair; table", min_object_points=1))
    usual = segmenter.query(processed, QuerySet.parse("chair; table"))
    assert len(small.objects) >= len(usual.objects)
    with pytest.raises(QueryError, match="min_object_points"):
        QuerySet.parse("chair", min_object_points=0)
    # the defaults are fixed: a caller cannot change them behind another's back
    with pytest.raises(AttributeError):
        segmenter.config = dataclasses.replace(defaults, pooling=False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        defaults.min_object_points = 1


# ------------------------------------------------------------------------ input features path
def test_input_features_replace_the_semantic_head(segmenter, crop, minilm):
    chair, table = minilm.encode(["chair", "table"])
    left = crop.points[:, 0] < np.median(crop.points[:, 0])
    rng = np.random.default_rng(0)
    features = np.where(left[:, None], chair, table) + 0.02 * rng.normal(size=(len(crop), 384))
    scan = Scan(crop.points, crop.colors, features=features.astype(np.float32))
    processed = segmenter.process(scan)
    assert processed.feature_source == "input"
    result = segmenter.query(processed, QuerySet.parse("chair; table", background=False))
    expected = np.where(left, 1, 2)
    assert (result.semantic == expected).mean() > 0.97  # voxels straddling the split may mix


def test_input_features_of_the_wrong_width_are_refused(segmenter, crop):
    scan = Scan(crop.points, crop.colors, features=np.zeros((len(crop), 512), np.float32))
    with pytest.raises(InputFeatureError, match=r"512-d.*384-d space of text encoder 'minilm-l6-v2'"):
        segmenter.process(scan)
    bad = np.zeros((len(crop), 384), np.float32)
    bad[3, 7] = np.nan
    with pytest.raises(InputFeatureError, match="non-finite"):
        segmenter.process(Scan(crop.points, crop.colors, features=bad))


# ---------------------------------------------------------------------------------- edge cases
def test_empty_scan_gives_an_empty_result(segmenter):
    processed = segmenter.process(Scan(np.zeros((0, 3), np.float32)))
    result = segmenter.query(processed, "chair")
    assert processed.num_voxels == 0 and result.semantic.shape == (0,) and result.objects == []


@pytest.mark.parametrize("path", ["logits", "features"])
def test_an_empty_cloud_decides_nothing_on_either_path_without_a_pooling_graph(segmenter, path):
    """Asked directly (as the calibrations do), an empty cloud gives empty labels; no graph is built."""
    processed = segmenter.process(Scan(np.zeros((0, 3), np.float32)))
    queries = QuerySet.parse("chair", vocabulary=False)
    decision, _ = segmenter.voxel_decision(processed, queries, path=path, pooling=True)
    assert decision.semantic.shape == (0,) and decision.score.shape == (0,) and processed.graph is None


@pytest.mark.parametrize("count", [1, 2, 7])
def test_tiny_clouds_segment_without_error(segmenter, count):
    rng = np.random.default_rng(count)
    scan = Scan(rng.normal(size=(count, 3)).astype(np.float32), rng.integers(0, 256, (count, 3)).astype(np.uint8))
    result = segmenter.query(segmenter.process(scan), "chair; table")
    assert result.semantic.shape == (count,)


def test_non_finite_points_are_a_clear_error(segmenter):
    with pytest.raises(ValueError, match="not finite"):
        segmenter.process(Scan(np.array([[0.0, 0.0, np.nan], [1.0, 0.0, 0.0]], np.float32)))


def test_colorless_scan_warns_and_still_segments(segmenter, crop):
    with pytest.warns(MissingInputWarning, match="cloud has none; using neutral grey"):
        processed = segmenter.process(Scan(crop.points))
    assert segmenter.query(processed, "chair").semantic.shape == (len(crop),)


def test_voxel_cap_keeps_an_answer_for_every_point(student, minilm, crop):
    model, metadata = student
    capped = Segmenter(model, metadata, minilm, SegmenterConfig(device="cpu", max_voxels=2000), allow_untrained=True)
    with pytest.warns(VoxelCapWarning):
        processed = capped.process(crop)
    assert processed.num_voxels == 2000
    result = capped.query(processed, "chair; table")
    assert result.semantic.shape == (len(crop),)


def test_segment_is_process_plus_query(segmenter, crop, processed):
    queries = QuerySet.parse("sofa; bed")
    once = segmenter.segment(crop, queries)
    twice = segmenter.query(processed, queries)
    np.testing.assert_array_equal(once.semantic, twice.semantic)
    assert "process_network" in once.timings
