"""The inference entry point: a scan in, per-point open-vocabulary labels and objects out.

Two steps, because a robot asks many questions about one map:

* :meth:`Segmenter.process` does everything that does not depend on the text: voxelise, input
  features, the student network (under ``inference_mode``; fp16 autocast on CUDA), unit semantic
  features per voxel, and the GGP graph (kNN + affinity weights). The result is a
  :class:`ProcessedCloud`, kept by the caller.
* :meth:`Segmenter.query` answers one :class:`QuerySet` on a processed cloud: text embeddings
  (cached), cosine logits, GGP, labels and scores per voxel, then per point, then objects.
  Cost: milliseconds, not a network pass.

Where GGP runs (all exact, the choice is only about cost): GGP is linear, so it can be applied
to anything the labels are linear in. The student's semantic head ends in a rank-r bottleneck
(StudentConfig.semantic_rank, 24 by default), so its whole field is pooled *once* in ``process``
on r + 1 channels (:class:`~.query.PooledLowRank`), and a query costs one (V, r) x (r, Q)
product. Without a narrow bottleneck (full-rank heads, a cloud's own 384/512/768-d features),
each query pools its own Q logits instead of D-dim features. The feature path (pool D-dim
features, then score) exists to check both (``query(..., path="features")``).

Settings per call: ``Segmenter.config`` holds the defaults, fixed at construction. A call that
wants another GGP setting or query rule passes it (``process(scan, ggp=...)``,
``voxel_decision(..., rule=...)``), and a query carries its own threshold, object size and
vocabulary switch (:class:`QuerySet`). Nothing a caller sets changes what a later call sees, so
tools that try several settings on one model (calibration, evaluation, the report) and the
node's parameter changes never have to save and restore anything.

CPU threads: on CPU the k-d tree search for GGP's neighbours runs on a worker thread while the
network runs (it needs only the voxel centres), so a 2-core machine works on both at once.

When a scan carries per-point semantic features (``scan.features``, lifted from 2D images by an
upstream node -- GeoPurify's setting), those (per-voxel means) replace the semantic head's
output, and GGP purifies them with the student's affinities. They must live in the checkpoint's
text space (same width as the text encoder).
"""

from __future__ import annotations

import time
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeGuard

import numpy as np
import torch

from .checkpoint import CheckpointError, CheckpointMetadata, check_text_space, load_checkpoint
from .features import input_features
from .ggp import Geometry, GGPConfig, Pooler, build_pooling_graph, pooling_geometry
from .neighbors import grid_neighbors
from .network import StudentNet, set_conv_algorithm, to_sparse_tensor
from .objects import extract_objects
from .query import (
    DecisionParts,
    DenseSemantic,
    LowRankSemantic,
    PooledLowRank,
    QueryRule,
    SemanticField,
    VoxelDecision,
    build_candidates,
    decide,
    decide_groups,
    normalize_features,
    score_features,
)
from .text import CachedTextEncoder, TextEncoder, load_text_encoder
from .types import QuerySet, SegmentationResult
from .vocabulary import Vocabulary, VocabularySummary, field_block, load_vocabulary, matrix_block, split_vocabulary
from .voxel import Voxels, voxelize

DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[1] / "weights" / "default"


class ModelNotAvailableError(CheckpointError):
    """No trained checkpoint where one was expected (e.g. the packaged default)."""


class UntrainedCheckpointError(CheckpointError):
    """A checkpoint marked ``trained: false`` (random weights) used without ``allow_untrained``."""


class DeviceUnavailableError(RuntimeError):
    """The requested device (e.g. "cuda") does not exist on this machine."""


class InputFeatureError(ValueError):
    """Per-point semantic features that cannot be used with this checkpoint."""


@dataclass(frozen=True)
class SegmenterConfig:
    """Inference settings. ``None`` for voxel size / temperature means: the checkpoint's value.
    The Segmenter's defaults; a call's own GGP, rule or query settings go with the call (module doc).

    max_voxels:       voxel cap per cloud (see :func:`voxelize`); bounds time and memory.
    ggp:              GGP k / tau / iterations; None = the setting calibrated for the checkpoint
                      (model.json ``ggp``, written by ``ov3d-train calibrate``), or GGPConfig()
                      when it records none. ``pooling=False`` skips GGP (raw network output).
    device:           "auto" (CUDA if available), "cpu", "cuda" or "cuda:N".
    fp16:             autocast the network to fp16 on CUDA (ignored on CPU).
    score_threshold:  default threshold when a QuerySet has none (None = off).
    min_object_points / min_object_voxels: smaller components are not reported as objects
                      (a QuerySet's own ``min_object_points`` replaces the first).
    oriented_boxes:   yaw-oriented object boxes (z up) instead of axis-aligned.
    precompute_max_channels: GGP strategy. A student whose semantic head has rank r (see
                      StudentConfig.semantic_rank) can have its whole semantic field pooled once
                      per cloud on r + 1 channels, after which every query is one small matrix
                      product; when r + 1 is at most this, that is done in ``process``. Otherwise
                      (full-rank heads, a cloud's own input features) each query pools its own
                      Q logits. 0 = always per query.
    floor_z:          floor height for the height input feature (None = estimated per cloud).
    num_threads:      torch intra-op threads on CPU (None = leave torch's setting).
    query_rule:       how the vocabulary competes with a query (core/query.py, "The one-query
                      decision"); None = the rule calibrated for the checkpoint (model.json
                      ``query``, written by ``ov3d-train calibrate-query``), or QueryRule().
    vocabulary:       vocabulary file for queries that use one (None = the shipped indoor list).
    """

    voxel_size: float | None = None
    max_voxels: int | None = 400_000
    ggp: GGPConfig | None = None
    pooling: bool = True
    device: str = "auto"
    fp16: bool = True
    score_threshold: float | None = None
    score_temperature: float | None = None
    min_object_points: int = 20
    min_object_voxels: int = 5
    oriented_boxes: bool = False
    precompute_max_channels: int = 32
    floor_z: float | None = None
    num_threads: int | None = None
    query_rule: QueryRule | None = None
    vocabulary: str | Path | None = None


@dataclass
class ProcessedCloud:
    """Everything about one scan that does not depend on the query."""

    voxels: Voxels
    points: np.ndarray  # (N, 3) the input points, for exact object boxes
    semantic: SemanticField  # unit semantic features per voxel (factored when from the student)
    affinity: torch.Tensor  # (V, m) unit affinity embeddings: the head's cosines, compacted (network.compact_embedding)
    graph: Pooler | None  # GGP operator (None for an empty cloud, or until needed with pooling off)
    pooled: PooledLowRank | None  # the semantic field after GGP, when pooled once per cloud (else None)
    ggp: GGPConfig  # the setting graph, field and centering were made with: its queries pool at its iterations
    feature_source: str  # "student" (semantic head) or "input" (the scan's own features)
    frame_id: str = "map"
    stamp_ns: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    grid_edges: tuple[np.ndarray, np.ndarray] | None = None  # voxel adjacency for objects, built by the first query
    # the vocabulary's logits summarised once per (pooling, vocabulary, temperature), by the first query using it
    vocabulary_summaries: dict = field(default_factory=dict)

    @property
    def num_points(self) -> int:
        return len(self.points)

    @property
    def num_voxels(self) -> int:
        return self.voxels.num_voxels


class Segmenter:
    """Student network + text encoder + GGP + scoring; see the module doc."""

    def __init__(
        self,
        model: StudentNet,
        metadata: CheckpointMetadata,
        text_encoder: TextEncoder,
        config: SegmenterConfig | None = None,
        *,
        allow_untrained: bool = False,
    ) -> None:
        _refuse_untrained(metadata, "this model", allow_untrained)
        if model.config != metadata.architecture:
            raise CheckpointError(
                "the model's StudentConfig differs from metadata.architecture; they must describe one network"
            )
        check_text_space(metadata, text_encoder)
        config = config or SegmenterConfig()
        # tau is calibrated per model: what "sharp" means depends on the trained embedding
        self._ggp: GGPConfig = config.ggp or metadata.ggp_config() or GGPConfig()
        self._rule: QueryRule = config.query_rule or metadata.query_rule() or QueryRule()
        self._config = replace(config, ggp=self._ggp, query_rule=self._rule)
        self.metadata = metadata
        if self.config.voxel_size and abs(self.config.voxel_size - metadata.voxel_size) > 1e-9:
            warnings.warn(
                f"voxel size {self.config.voxel_size} m differs from the {metadata.voxel_size} m the network was "
                "trained at; its kernels span a different physical size, expect worse labels",
                stacklevel=2,
            )
        self.device = resolve_device(self.config.device)
        if self.config.num_threads and self.device.type == "cpu":
            torch.set_num_threads(int(self.config.num_threads))
        self.model = set_conv_algorithm(model.to(self.device).eval(), self.device)
        self.text_encoder = (
            text_encoder if isinstance(text_encoder, CachedTextEncoder) else CachedTextEncoder(text_encoder)
        )
        self.voxel_size = float(self.config.voxel_size or metadata.voxel_size)
        self.temperature = float(self.config.score_temperature or metadata.score_temperature)
        self.use_fp16 = bool(self.config.fp16 and self.device.type == "cuda")
        self._knn_worker: ThreadPoolExecutor | None = None
        self._vocabulary: Vocabulary | None = None

    @property
    def config(self) -> SegmenterConfig:
        """The defaults every call starts from (read-only: a call passes its own settings instead)."""
        return self._config

    @property
    def vocabulary(self) -> Vocabulary:
        """The competing vocabulary, read and embedded at first use (memoised per text encoder)."""
        if self._vocabulary is None:
            self._vocabulary = load_vocabulary(self.text_encoder, self.config.vocabulary, self.device)
        return self._vocabulary

    @property
    def query_rule_calibrated(self) -> bool:
        """Whether queries use the one-query rule calibrated for this checkpoint (model.json ``query``) by default."""
        return self.rule_is_calibrated(self._rule)

    @property
    def ggp_calibrated(self) -> bool:
        """Whether GGP runs at the setting calibrated for this checkpoint (model.json ``ggp``) by default."""
        return self.ggp_is_calibrated(self._ggp)

    def rule_is_calibrated(self, rule: QueryRule) -> bool:
        """Whether ``rule`` is the one-query rule calibrated for this checkpoint."""
        return self.metadata.query is not None and rule == self.metadata.query_rule()

    def ggp_is_calibrated(self, ggp: GGPConfig) -> bool:
        """Whether ``ggp`` is the GGP setting calibrated for this checkpoint."""
        return self.metadata.ggp is not None and ggp == self.metadata.ggp_config()

    # -------------------------------------------------------------------------------- building
    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path | None = None,
        device: str = "auto",
        config: SegmenterConfig | None = None,
        text_encoder: TextEncoder | None = None,
        allow_untrained: bool = False,
    ) -> Segmenter:
        """Load a checkpoint directory (None = the packaged default) and its text encoder.

        The text encoder defaults to the one the checkpoint records (MiniLM); open_clip
        checkpoints need ``text_encoder`` built with the local weights file.
        """
        if path is None:
            path = DEFAULT_CHECKPOINT
            if not (path / "model.json").is_file():
                raise ModelNotAvailableError(
                    f"no trained model ships with this ov3d_ros yet (nothing at {path}). Train a student with "
                    "'ov3d-train' and pass its checkpoint directory (--checkpoint / the 'checkpoint' parameter), "
                    f"or install one at {path}."
                )
        if config is None:
            config = SegmenterConfig(device=device)
        elif device != "auto":
            config = replace(config, device=device)
        torch_device = resolve_device(config.device)
        model, metadata = load_checkpoint(path, torch_device)
        _refuse_untrained(metadata, str(path), allow_untrained)  # before loading a text encoder
        if text_encoder is None:
            text_encoder = _default_encoder(metadata)
        return cls(model, metadata, text_encoder, config, allow_untrained=allow_untrained)

    # ------------------------------------------------------------------------------ processing
    def process(self, scan, *, ggp: GGPConfig | None = None) -> ProcessedCloud:
        """Voxelise, run the network, build the GGP graph (module doc). ``scan`` is an io Scan.

        ``ggp``: this cloud's GGP setting (neighbours, weights, cells, centering, passes; None =
        ``config.ggp``); the cloud keeps it, and its queries pool with it.

        Raises ValueError for non-finite points (drop NaNs first: the io readers do by default)
        and InputFeatureError for per-point features of the wrong width or with NaNs. An empty
        scan gives an empty ProcessedCloud (queries then return empty results).
        """
        ggp = self._ggp if ggp is None else ggp
        timings: dict[str, float] = {}
        start = time.perf_counter()
        tick = start
        uses = _feature_uses(self.metadata.input_features)
        has_input_features = scan.features is not None and scan.features.shape[1] > 0
        if has_input_features:
            _check_input_features(scan.features, self.metadata)
        voxels = voxelize(
            scan.points,
            self.voxel_size,
            colors=scan.colors,
            normals=scan.normals if "normals" in uses else None,
            features=scan.features if has_input_features else None,
            max_voxels=self.config.max_voxels,
        )
        timings["voxelize"], tick = _lap(tick)

        if voxels.num_voxels == 0:
            empty = DenseSemantic(torch.zeros((0, self.metadata.text_space.dim), device=self.device))
            no_affinity = torch.zeros((0, self.model.config.affinity_dim), device=self.device)
            source = "input" if has_input_features else "student"
            timings["total"] = time.perf_counter() - start
            return ProcessedCloud(
                voxels=voxels,
                points=scan.points,
                semantic=empty,
                affinity=no_affinity,
                graph=None,
                pooled=None,
                ggp=ggp,
                feature_source=source,
                frame_id=scan.frame_id,
                stamp_ns=scan.stamp_ns,
                timings=timings,
            )

        knn = self._start_knn(voxels, ggp) if self.config.pooling else None
        feats = torch.from_numpy(input_features(voxels, self.metadata.input_features, floor_z=self.config.floor_z))
        coords = torch.from_numpy(voxels.coords)
        timings["input_features"], tick = _lap(tick)

        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16, enabled=self.use_fp16):
            sparse = to_sparse_tensor(coords.to(self.device), feats.to(self.device))
            if has_input_features:
                _, affinity = self.model.forward_factored(sparse, semantic=False)
                lifted = torch.from_numpy(voxels.features).to(self.device)
                semantic: SemanticField = DenseSemantic(normalize_features(lifted.float()))
            else:
                hidden, affinity = self.model.forward_factored(sparse)
                assert hidden is not None  # asked for (semantic=True)
                with torch.autocast("cuda", enabled=False):  # norms in full precision
                    semantic = LowRankSemantic.from_linear(hidden, self.model.semantic_head.output_layer)
                    # calibrated on the student's features: a cloud's own lifted features keep theirs
                    semantic = semantic.centered(ggp.centering)
            affinity = affinity.float()
        _sync(self.device)
        timings["network"], tick = _lap(tick)

        graph = self._build_graph(voxels, affinity, ggp, knn) if self.config.pooling else None
        timings["ggp_graph"], tick = _lap(tick)
        pooled = None
        if graph is not None and self._pool_once(semantic):
            with torch.inference_mode():
                pooled = semantic.pooled(lambda values: graph.pool(values, ggp.iterations))
            _sync(self.device)
            timings["ggp_field"], tick = _lap(tick)
        timings["total"] = tick - start
        return ProcessedCloud(
            voxels=voxels,
            points=scan.points,
            semantic=semantic,
            affinity=affinity,
            graph=graph,
            pooled=pooled,
            ggp=ggp,
            feature_source="input" if has_input_features else "student",
            frame_id=scan.frame_id,
            stamp_ns=scan.stamp_ns,
            timings=timings,
        )

    def _pool_once(self, semantic: SemanticField) -> TypeGuard[LowRankSemantic]:
        return isinstance(semantic, LowRankSemantic) and semantic.rank + 1 <= self.config.precompute_max_channels

    def _start_knn(self, voxels: Voxels, ggp: GGPConfig) -> Future | None:
        """On CPU, start the k-d tree search on a worker thread: it needs only the voxel centres,
        so it overlaps the network pass (both release the GIL) instead of following it."""
        if self.device.type != "cpu":
            return None  # on CUDA the grid search runs on the device, after the network
        if self._knn_worker is None:
            self._knn_worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ov3d-knn")
        # with cells, the cells and their neighbours are geometry too
        return self._knn_worker.submit(
            pooling_geometry, voxels.centers, ggp.k, ggp.coarsen, voxels.voxel_size, include_self=ggp.include_self
        )

    def _build_graph(
        self, voxels: Voxels, affinity: torch.Tensor, ggp: GGPConfig, knn: Future | Geometry | None = None
    ) -> Pooler:
        geometry: Geometry | None = knn.result() if isinstance(knn, Future) else knn
        with torch.inference_mode():
            centers = torch.from_numpy(voxels.centers).to(self.device)
            return build_pooling_graph(
                centers, affinity, ggp, knn=geometry, cell_size=voxels.voxel_size, device=self.device
            )

    def _graph(self, processed: ProcessedCloud) -> Pooler:
        """The cloud's GGP graph, built now if processing skipped it (pooling was off)."""
        if processed.graph is None:
            if not processed.num_voxels:
                raise ValueError("an empty cloud has no pooling graph; callers answer it without pooling")
            processed.graph = self._build_graph(processed.voxels, processed.affinity, processed.ggp)
        return processed.graph

    # --------------------------------------------------------------------------------- queries
    def query(
        self, processed: ProcessedCloud, queries: QuerySet | str, *, path: str = "logits", rule: QueryRule | None = None
    ) -> SegmentationResult:
        """Answer ``queries`` on a processed cloud: per-point labels, scores, instances, objects.

        The query's own threshold, object size and vocabulary switch apply (``config``'s where it
        has none). path: "logits" (default: pool the per-query logits) or "features" (pool the
        D-dim features, then score) -- same labels and scores; the second exists to check the
        first and costs D/Q times more. rule: the one-query rule (None = ``config.query_rule``).
        """
        if isinstance(queries, str):
            queries = QuerySet.parse(queries)
        start = time.perf_counter()
        candidates = build_candidates(queries)
        n = processed.num_points
        if processed.num_voxels == 0:
            empty_i, empty_f = np.zeros(n, np.int32), np.zeros(n, np.float32)
            return SegmentationResult(
                queries, empty_i, empty_i.copy(), empty_f, [], {"total": time.perf_counter() - start}
            )
        decision, timings = self.voxel_decision(processed, queries, path=path, rule=rule)
        tick = time.perf_counter()
        voxels = processed.voxels
        min_points = self.config.min_object_points if queries.min_object_points is None else queries.min_object_points
        voxel_semantic = decision.semantic.cpu().numpy()
        voxel_score = decision.score.cpu().numpy()
        voxel_instance, objects = extract_objects(
            voxels,
            voxel_semantic,
            voxel_score,
            list(candidates.positives),
            min_points=min_points,
            min_voxels=self.config.min_object_voxels,
            oriented=self.config.oriented_boxes,
            points=processed.points,
            grid_edges=self._grid_edges(processed),
        )
        timings["objects"], tick = _lap(tick)
        index = voxels.point_to_voxel
        result = SegmentationResult(
            queries=queries,
            semantic=voxel_semantic[index].astype(np.int32, copy=False),
            instance=voxel_instance[index].astype(np.int32, copy=False),
            score=voxel_score[index].astype(np.float32, copy=False),
            objects=objects,
            timings=timings,
        )
        timings["to_points"], tick = _lap(tick)
        timings["total"] = tick - start
        return result

    @staticmethod
    def _grid_edges(processed: ProcessedCloud) -> tuple[np.ndarray, np.ndarray]:
        """The voxels' 26-neighbour pairs (what extract_objects links), built once per cloud:
        hashing the grid is most of an object extraction, and re-queries share the grid."""
        if processed.grid_edges is None:
            processed.grid_edges = grid_neighbors(processed.voxels.coords)
        return processed.grid_edges

    def voxel_decision(
        self,
        processed: ProcessedCloud,
        queries: QuerySet,
        *,
        pooling: bool | None = None,
        path: str = "logits",
        rule: QueryRule | None = None,
    ) -> tuple[VoxelDecision, dict[str, float]]:
        """Per-voxel labels and scores (no objects, no per-point maps) and stage timings.

        pooling: this call's GGP switch (None = the config's; evaluation compares both on one
        cloud). rule: this call's one-query rule (None = ``config.query_rule``; calibration tries several).
        """
        if path not in ("logits", "features"):
            raise ValueError(f"path must be 'logits' or 'features', got {path!r}")
        pooling = self.config.pooling if pooling is None else pooling
        rule = self._rule if rule is None else rule
        timings: dict[str, float] = {}
        candidates = build_candidates(queries)
        threshold = queries.threshold if queries.threshold is not None else self.config.score_threshold
        tick = time.perf_counter()
        text = torch.from_numpy(self.text_encoder.encode(list(candidates.names))).to(self.device)
        timings["text"], tick = _lap(tick)
        if queries.uses_vocabulary:
            return self._vocabulary_decision(processed, candidates, text, pooling, path, threshold, rule, timings)
        with torch.inference_mode():
            if path == "logits":
                logits = self._logits(processed, text, pooling, timings)
                tick = time.perf_counter()
                decision = decide(logits, candidates.num_positives, self.temperature, threshold)
            else:
                # the check path: D-dim features pooled directly, never via the precomputed basis
                pooled = self._check_path_features(processed, pooling, timings)
                tick = time.perf_counter()
                decision = score_features(pooled, text, candidates, self.temperature, threshold)
        _sync(self.device)
        timings["decide"], tick = _lap(tick)
        return decision, timings

    def _logits(self, processed: ProcessedCloud, text: torch.Tensor, pooling: bool, timings: dict) -> torch.Tensor:
        """(V, Q) logits of ``text`` as the decision sees them: from the field pooled once per cloud,
        or pooled per query, or raw (pooling off). Records "logits" and "pooling" timings."""
        tick = time.perf_counter()
        if pooling and processed.pooled is not None:  # pooled once in process()
            logits = processed.pooled.logits(text)
            timings["logits"], tick = _lap(tick)
        else:
            logits = processed.semantic.logits(text)
            timings["logits"], tick = _lap(tick)
            if pooling and processed.num_voxels:
                logits = self._graph(processed).pool(logits, processed.ggp.iterations)
        _sync(self.device)
        timings["pooling"], tick = _lap(tick)
        return logits

    def _check_path_features(self, processed: ProcessedCloud, pooling: bool, timings: dict) -> torch.Tensor:
        tick = time.perf_counter()
        pooled = processed.semantic.features()
        if pooling and processed.num_voxels:
            pooled = self._graph(processed).pool(pooled, processed.ggp.iterations)
        _sync(self.device)
        timings["pooling"], tick = _lap(tick)
        return pooled

    def _vocabulary_decision(
        self,
        processed: ProcessedCloud,
        candidates,
        text: torch.Tensor,
        pooling: bool,
        path: str,
        threshold: float | None,
        rule: QueryRule,
        timings: dict,
    ) -> tuple[VoxelDecision, dict[str, float]]:
        """The one-query decision (core/query.py): the query's own candidates plus the vocabulary,
        split by text cosine; the competing names summarised once per cloud (logit path) or as
        explicit columns (the check path, which the logit path is tested against)."""
        with torch.inference_mode():
            if path == "logits":
                parts = self._vocabulary_parts(processed, candidates, text, pooling, rule, timings)
                tick = time.perf_counter()
                decision = parts.decide(threshold)
            else:
                tick = time.perf_counter()
                vocabulary = self.vocabulary
                split, answer_text, owners = self._vocabulary_split(candidates, text, rule)
                columns = torch.cat([answer_text, text[candidates.num_positives :]])
                timings["vocabulary"], tick = _lap(tick)
                pooled = self._check_path_features(processed, pooling, timings)
                competitors = vocabulary.embeddings[~split.removed]
                logits = pooled.float() @ torch.cat([columns, competitors]).float().T
                logits[:, len(columns) :] -= float(rule.margin)
                answers = len(answer_text)
                tick = time.perf_counter()
                decision = decide_groups(logits[:, :answers], owners, logits[:, answers:], self.temperature, threshold)
        _sync(self.device)
        timings["decide"], tick = _lap(tick)
        return decision, timings

    def decision_parts(
        self,
        processed: ProcessedCloud,
        queries: QuerySet,
        *,
        pooling: bool | None = None,
        rule: QueryRule | None = None,
    ) -> DecisionParts:
        """The pieces a vocabulary query is decided from (logit path; ``parts.decide()`` equals
        :meth:`voxel_decision`'s labels and scores with the same ``rule``, None = ``config.query_rule``).
        For calibrations that try several rules and margins."""
        pooling = self.config.pooling if pooling is None else pooling
        rule = self._rule if rule is None else rule
        candidates = build_candidates(queries)
        text = torch.from_numpy(self.text_encoder.encode(list(candidates.names))).to(self.device)
        with torch.inference_mode():
            return self._vocabulary_parts(processed, candidates, text, pooling, rule, {})

    def _vocabulary_split(self, candidates, text: torch.Tensor, rule: QueryRule):
        positives = candidates.num_positives
        split = split_vocabulary(self.vocabulary, text[:positives], rule, taken=candidates.names)
        answer_text = torch.cat([text[:positives], self.vocabulary.embeddings[split.alias_index]])
        owners = torch.cat([torch.arange(positives, device=self.device), split.alias_owner.to(self.device)])
        return split, answer_text, owners

    def _vocabulary_parts(
        self, processed: ProcessedCloud, candidates, text: torch.Tensor, pooling: bool, rule: QueryRule, timings: dict
    ) -> DecisionParts:
        tick = time.perf_counter()
        split, answer_text, owners = self._vocabulary_split(candidates, text, rule)
        timings["vocabulary"], tick = _lap(tick)
        logits = self._logits(processed, torch.cat([answer_text, text[candidates.num_positives :]]), pooling, timings)
        tick = time.perf_counter()
        summary = self._vocabulary_summary(processed, pooling)
        competition = summary.competition(split.removed, rule.margin) if summary is not None else None
        timings["vocabulary_competition"], tick = _lap(tick)
        answers = len(answer_text)
        return DecisionParts(logits[:, :answers], owners, logits[:, answers:], competition, self.temperature)

    def _vocabulary_summary(self, processed: ProcessedCloud, pooling: bool) -> VocabularySummary | None:
        """The vocabulary's logits on this cloud, summarised at the first query that needs them."""
        vocabulary = self.vocabulary
        key = (bool(pooling), vocabulary.sha256, self.temperature, processed.ggp.iterations if pooling else 0)
        summary = processed.vocabulary_summaries.get(key)
        if summary is None and processed.num_voxels:
            if pooling and processed.pooled is not None:
                block = field_block(processed.pooled, vocabulary)
            elif not pooling:
                block = field_block(processed.semantic, vocabulary)
            else:  # logits pooled per query: pool the vocabulary's once per cloud and keep them
                matrix = self._graph(processed).pool(
                    processed.semantic.logits(vocabulary.embeddings), processed.ggp.iterations
                )
                block = matrix_block(matrix)
            summary = VocabularySummary(block, processed.num_voxels, len(vocabulary), self.temperature)
            processed.vocabulary_summaries[key] = summary
        return summary

    def pooled_features(self, processed: ProcessedCloud, *, pooling: bool | None = None) -> torch.Tensor:
        """(V, D) float32 GGP-pooled unit semantic features, not re-normalised (with pooling off:
        the unit features themselves). The feature path; costs D/Q times the logit path."""
        pooling = self.config.pooling if pooling is None else pooling
        with torch.inference_mode():
            if pooling and processed.pooled is not None:
                return processed.pooled.features()
            features = processed.semantic.features()
            if not pooling or processed.num_voxels == 0:
                return features.clone()
            return self._graph(processed).pool(features, processed.ggp.iterations)

    def segment(self, scan, queries: QuerySet | str, *, ggp: GGPConfig | None = None) -> SegmentationResult:
        """process + query in one call (for one-off use; keep the ProcessedCloud to re-query)."""
        processed = self.process(scan, ggp=ggp)
        result = self.query(processed, queries)
        result.timings = {**{f"process_{k}": v for k, v in processed.timings.items()}, **result.timings}
        return result


# ----------------------------------------------------------------------------------- helpers
def resolve_device(device: str | torch.device) -> torch.device:
    """ "auto" -> CUDA when available, else CPU; a CUDA request without CUDA is a clear error."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailableError(
            f"device {str(device)!r} requested but CUDA is not available here; use 'cpu' or 'auto'"
        )
    return device


def _refuse_untrained(metadata: CheckpointMetadata, where: str, allow_untrained: bool) -> None:
    if not metadata.trained and not allow_untrained:
        raise UntrainedCheckpointError(
            f"{where} holds untrained (random) weights, marked 'trained: false'; its labels mean nothing. "
            "Pass a trained checkpoint (train one with ov3d-train), or allow_untrained=True (--allow-untrained) "
            "for plumbing tests."
        )


def _default_encoder(metadata: CheckpointMetadata) -> TextEncoder:
    space = metadata.text_space
    if space.encoder_id.startswith("open_clip:"):
        raise CheckpointError(
            f"this checkpoint was trained against {space.encoder_id!r}; build that encoder with its local weights "
            "file (ov3d_ros.core.text.OpenClipEncoder) and pass it as text_encoder"
        )
    return load_text_encoder(space.encoder_id, templates=space.templates)


def _feature_uses(name: str) -> tuple[str, ...]:
    from .features import feature_set

    return feature_set(name).uses


def _check_input_features(features: np.ndarray, metadata: CheckpointMetadata) -> None:
    dim = metadata.text_space.dim
    if features.shape[1] != dim:
        raise InputFeatureError(
            f"the cloud's per-point features are {features.shape[1]}-d, but this checkpoint works in the "
            f"{dim}-d space of text encoder {metadata.text_space.encoder_id!r}; lift features with that "
            "encoder's image model, or drop the 'features' field to use the student's own semantic head"
        )
    if not np.isfinite(features).all():
        bad = int((~np.isfinite(features).all(axis=1)).sum())
        raise InputFeatureError(f"{bad} points have non-finite (NaN/inf) semantic features; fix the upstream lifter")


def _lap(tick: float) -> tuple[float, float]:
    now = time.perf_counter()
    return now - tick, now


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


__all__ = [
    "DEFAULT_CHECKPOINT",
    "DeviceUnavailableError",
    "InputFeatureError",
    "ModelNotAvailableError",
    "ProcessedCloud",
    "Segmenter",
    "SegmenterConfig",
    "UntrainedCheckpointError",
    "resolve_device",
]
