"""segment_node (console script ``ov3d-segment``): point clouds + text queries -> labelled clouds.

A managed (lifecycle) node, like Nav2's and yolo_ros's perception nodes:

* unconfigured: parameters declared (``ros2 param`` works), ``~/set_query`` answers;
* configure: loads and checks the model (a bad checkpoint fails the transition, with the reason
  in the log), creates the publishers;
* activate: subscribes to the inputs and starts the worker; deactivate stops both;
* cleanup: releases the model (and its GPU memory) and the publishers.

``ov3d-segment`` and the launch file configure and activate it at start; ``--no-autostart``
(launch: ``autostart:=false``) leaves it unconfigured for a lifecycle manager.

Topics and services (relative to the node, ``~/``):

* in:  ``~/cloud`` (sensor_msgs/PointCloud2), ``~/query`` (std_msgs/String, "chair; red mug",
  reliable + transient local so a query sent before the node started still arrives),
  ``~/structured_query`` (ov3d_msgs/Query, when ov3d_msgs is built);
* ``~/set_query`` (ov3d_msgs/srv/SetQuery): the same change, answered with success, a message
  and the parsed query list (a refused query says why to the caller);
* out: ``~/labeled_cloud`` (x, y, z, rgb, label = semantic << 16 | instance, score),
  ``~/markers`` (MarkerArray), ``~/objects`` (ov3d_msgs/ObjectArray) or, without ov3d_msgs,
  ``~/objects_json`` (std_msgs/String), and ``/diagnostics``.

Threads: the executor only hands clouds over (a newest-only slot, drops counted); one worker
thread decodes, runs the network, answers the query and publishes. The network output of the
last cloud is kept, so a new query (topic or parameter) is answered without running it again.
The parameters live in one immutable value (:class:`NodeSettings` and a count of query changes),
replaced whole by the parameter callback, which ``~/set_query`` and the query topics go through.
Each run of the worker reads it once and passes what it needs with its calls (the GGP setting to
``process``, the query with its threshold and object size to ``query``), so a change never lands
halfway through a run: the worker answers it on the kept cloud right after.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import Header, String
from visualization_msgs.msg import MarkerArray

from ov3d_ros.core.types import QueryError, QuerySet, SegmentationResult
from ov3d_ros.io.errors import CloudFormatError
from ov3d_ros.io.messages import rclpy_message_types
from ov3d_ros.io.pointcloud2 import cloud_to_scan, make_labeled_cloud
from ov3d_ros.io.scan import Scan, pack_label
from ov3d_ros.node.diagnostics import NodeHealth
from ov3d_ros.node.interfaces import load_ov3d_msgs, ov3d_msgs, ov3d_srvs
from ov3d_ros.node.latest import LatestSlot
from ov3d_ros.node.markers import objects_to_markers
from ov3d_ros.node.object_messages import objects_to_json, objects_to_msg, query_from_msg
from ov3d_ros.node.palette import colorize
from ov3d_ros.node.parameters import NodeSettings, ParameterError, declare_parameters, set_parameters_result
from ov3d_ros.node.qos import CLOUD_OUT_QOS, QUERY_QOS, RESULT_QOS, CloudSubscription, publisher_event_callbacks
from ov3d_ros.node.query_service import query_changes
from ov3d_ros.node.transforms import CloudTransformer, TransformUnavailable

QUERY_QOS_VOLATILE = QoSProfile(
    depth=QUERY_QOS.depth, reliability=QUERY_QOS.reliability, durability=DurabilityPolicy.VOLATILE
)

NODE_NAME = "segment_node"
DIAGNOSTICS_PERIOD_S = 1.0
WARN_THROTTLE_S = 5.0
# Parameters whose change alters the answer but not the network output: re-query the cache.
QUERY_PARAMETERS = frozenset(
    {"queries", "negatives", "use_background", "use_vocabulary", "score_threshold", "min_object_points"}
)


class StartupError(RuntimeError):
    """The node cannot start (bad parameter, missing or mismatched checkpoint, no CUDA, ...)."""


@dataclass
class _Cloud:
    msg: Any
    received: float  # time.monotonic() at arrival


@dataclass(frozen=True)
class _Current:
    """The node's settings now: one immutable value the parameter callback replaces whole (one
    attribute assignment), so the worker never sees half of a change."""

    settings: NodeSettings
    query_version: int = 0  # counts changes of QUERY_PARAMETERS: an answer older than this is stale


@dataclass
class _Cached:
    """The last processed cloud: what a new query is answered on."""

    processed: Any  # core.segmenter.ProcessedCloud
    scan: Scan
    header: Header
    query_version: int  # of the settings its last answer used


def load_segmenter(settings: NodeSettings):
    """The Segmenter the parameters describe; StartupError with one clear message otherwise.
    Its GGP is the model's: the node passes ``settings.ggp_setting(...)`` with each cloud."""
    from ov3d_ros.core.checkpoint import CheckpointError
    from ov3d_ros.core.segmenter import Segmenter, SegmenterConfig
    from ov3d_ros.core.text import TextEncoderError

    config = SegmenterConfig(
        voxel_size=settings.voxel_size or None,
        device=settings.device,
        min_object_points=settings.min_object_points,
    )
    try:
        segmenter = Segmenter.from_checkpoint(
            settings.checkpoint or None,
            device=settings.device,
            config=config,
            allow_untrained=settings.allow_untrained,
        )
        return segmenter
    except (CheckpointError, TextEncoderError, RuntimeError, OSError, ValueError) as exc:
        raise StartupError(str(exc)) from exc


def describe_model(segmenter: Any, source: str, ggp: Any = None) -> str:
    """One line on the model and the GGP it runs at (``ggp``; None: the segmenter's own)."""
    meta = segmenter.metadata
    state = "trained" if meta.trained else "UNTRAINED random weights, labels mean nothing"
    ggp = segmenter.config.ggp if ggp is None else ggp
    origin = "calibrated" if segmenter.ggp_is_calibrated(ggp) else "set"
    cells = f" on {ggp.coarsen}-voxel cells" if ggp.coarsen > 1 else ""
    centered = f", centering {ggp.centering:g}" if ggp.centering > 0 else ""
    return (
        f"{source} ({state}; voxel {segmenter.voxel_size:g} m; text {meta.text_space.encoder_id}; "
        f"GGP k {ggp.k} tau {ggp.tau:g} T {ggp.iterations}{cells}{centered}, {origin})"
    )


def subsample(scan: Scan, max_points: int) -> Scan:
    """At most ``max_points`` points, chosen at random with a fixed seed (same cloud, same subset)."""
    if len(scan) <= max_points:
        return scan
    keep = np.sort(np.random.default_rng(0).choice(len(scan), size=max_points, replace=False))
    return scan.subset(keep)


class SegmentNode(LifecycleNode):
    """The ROS side of :class:`ov3d_ros.core.segmenter.Segmenter` (see the module doc)."""

    def __init__(self, *, segmenter: Any = None, node_name: str = NODE_NAME, **node_kwargs: Any) -> None:
        super().__init__(node_name, **node_kwargs)
        try:
            self._current = _Current(declare_parameters(self))
        except ParameterError as exc:
            raise StartupError(f"bad parameter: {exc}") from exc
        self._given_segmenter = segmenter  # injected (tests, demo): configure uses it instead of loading
        self.segmenter: Any = None
        self._ggp: Any = None  # the GGP each cloud is processed with, fixed at configure (read-only parameters)
        self.transition_error = ""  # why the last configure/activate failed
        self.active = False

        self._lock = threading.Lock()
        self._slot: LatestSlot[_Cloud] = LatestSlot()
        self._cached: _Cached | None = None
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._last_start = -float("inf")
        self.last_timings: dict[str, float] = {}
        self.last_result: tuple[SegmentationResult, Scan, Header] | None = None  # for the demo and tests
        self.results_published = 0
        self._types = rclpy_message_types()
        self.health = NodeHealth(
            f"{self.get_name()}: open-vocabulary segmentation",
            device="none",
            model="not configured",
            input_topic=self.resolve_topic_name("~/cloud"),
        )
        self.health.queries = self.settings.queries
        self._publishers_made: list[Any] = []
        self.cloud_sub: CloudSubscription | None = None
        self._query_subs: list[Any] = []
        self._diag_timer: Any = None
        self._transformer: CloudTransformer | None = None

        status = load_ov3d_msgs()
        self._msgs_status = status
        self._msgs = ov3d_msgs() if status.available else None
        self.add_on_set_parameters_callback(lambda params: set_parameters_result(params, running=True))
        self.add_post_set_parameters_callback(self._on_parameters_set)
        if status.available:  # in every state: a query set while inactive is used once active
            self.create_service(ov3d_srvs().SetQuery, "~/set_query", self._on_set_query)
        else:
            self.get_logger().info(f"no ~/set_query service and no ov3d_msgs topics: {status.reason}")

    @property
    def settings(self) -> NodeSettings:
        """The parameters now (one immutable snapshot; see the module doc)."""
        return self._current.settings

    # ----------------------------------------------------------------------------- lifecycle
    def bring_up(self) -> None:
        """configure + activate, as ``ov3d-segment`` does at start; StartupError with the reason."""
        if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            raise StartupError(self.transition_error or "configure failed")
        if self.trigger_activate() != TransitionCallbackReturn.SUCCESS:
            raise StartupError(self.transition_error or "activate failed")

    def _fail(self, transition: str, exc: Exception) -> TransitionCallbackReturn:
        self.transition_error = str(exc) if isinstance(exc, StartupError) else f"{type(exc).__name__}: {exc}"
        self.get_logger().error(f"{transition} failed: {self.transition_error}")
        return TransitionCallbackReturn.FAILURE

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.transition_error = ""
        try:
            self._configure()
        except Exception as exc:  # a bad checkpoint, no CUDA, ...: stay unconfigured, say why
            self._release()
            return self._fail("configure", exc)
        return super().on_configure(state)

    def _configure(self) -> None:
        log = self.get_logger()
        if self._given_segmenter is not None:
            # the query parameters still rule the answer (each query carries them); GGP stays its own
            self.segmenter = self._given_segmenter
            self._ggp = self.segmenter.config.ggp
            source = "Segmenter given in code"
        else:
            self.segmenter = load_segmenter(self.settings)
            self._ggp = self.settings.ggp_setting(self.segmenter.config.ggp)
            source = self.settings.checkpoint or "packaged default"
        model = describe_model(self.segmenter, source, self._ggp)
        if not self.segmenter.metadata.trained:
            log.warning(f"model: {model}")
        else:
            log.info(f"model: {model} on {self.segmenter.device}")
        self.health.device, self.health.model = str(self.segmenter.device), model

        events = lambda topic: publisher_event_callbacks(log, topic)
        publish = self.create_lifecycle_publisher
        self.cloud_pub = publish(
            PointCloud2, "~/labeled_cloud", CLOUD_OUT_QOS, event_callbacks=events("~/labeled_cloud")
        )
        self.marker_pub = publish(MarkerArray, "~/markers", RESULT_QOS, event_callbacks=events("~/markers"))
        if self._msgs is not None:
            self.objects_pub = publish(
                self._msgs.ObjectArray, "~/objects", RESULT_QOS, event_callbacks=events("~/objects")
            )
            log.info(
                f"objects: ov3d_msgs/ObjectArray on {self.objects_pub.topic_name} "
                f"(ov3d_msgs from {self._msgs_status.origin})"
            )
            if self._msgs_status.stale:
                log.warning("ov3d_msgs was built from older .msg files than this checkout's: run ov3d-build-msgs")
        else:
            self.objects_pub = publish(String, "~/objects_json", RESULT_QOS, event_callbacks=events("~/objects_json"))
            log.info(
                f"objects: JSON on {self.objects_pub.topic_name} and boxes on ~/markers; {self._msgs_status.reason}"
            )
        self.diag_pub = publish(DiagnosticArray, "/diagnostics", 10)
        self._publishers_made = [self.cloud_pub, self.marker_pub, self.objects_pub, self.diag_pub]

        self._transformer = None
        if self.settings.target_frame:
            self._transformer = CloudTransformer(self, self.settings.target_frame, self.settings.tf_timeout_s)
            if not self._transformer.available:
                log.warning(
                    f"target_frame {self.settings.target_frame!r} ignored: {self._transformer.reason}; "
                    "results stay in each cloud's own frame"
                )
                self._transformer = None

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.transition_error = ""
        try:
            self.cloud_sub = CloudSubscription(
                self,
                PointCloud2,
                "~/cloud",
                self._on_cloud,
                reliability=self.settings.input_reliability,
                depth=self.settings.input_depth,
            )
            # transient local: a query latched before the node started still arrives; volatile too,
            # or `ros2 topic pub` (volatile by default) never matches and waits forever
            self._query_subs = [
                self.create_subscription(String, "~/query", self._on_query_text, qos)
                for qos in (QUERY_QOS, QUERY_QOS_VOLATILE)
            ]
            if self._msgs is not None:
                self._query_subs.append(
                    self.create_subscription(self._msgs.Query, "~/structured_query", self._on_query_msg, QUERY_QOS)
                )
            self._diag_timer = self.create_timer(DIAGNOSTICS_PERIOD_S, self._publish_diagnostics)
            self._stop.clear()
            self._worker = threading.Thread(target=self._work, name="ov3d_segment_worker", daemon=True)
            self._worker.start()
        except Exception as exc:
            self._stop_inputs()
            return self._fail("activate", exc)
        self.get_logger().info(
            f"active: clouds on {self.cloud_sub.resolved_topic}, queries on {self.resolve_topic_name('~/query')} "
            f"(now: {self.settings.queries!r})"
        )
        self.active = True
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_inputs()
        self.get_logger().info("inactive: inputs unsubscribed, nothing is published")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self.get_logger().info("unconfigured: model and publishers released")
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_inputs()
        self._release()
        return super().on_shutdown(state)

    def _stop_inputs(self) -> None:
        """Unsubscribe, stop the diagnostics timer and the worker (deactivate)."""
        self.active = False
        if self.cloud_sub is not None:
            self.cloud_sub.close()
            self.cloud_sub = None
        for sub in self._query_subs:
            self.destroy_subscription(sub)
        self._query_subs = []
        if self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = None
        self._stop_worker()

    def _stop_worker(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        self._slot.poke()
        worker, self._worker = self._worker, None
        if worker is not None and worker.is_alive() and threading.current_thread() is not worker:
            worker.join(timeout=timeout_s)
        self._slot.take(timeout=0.0)  # a cloud that arrived meanwhile is not served later

    def _release(self) -> None:
        """Drop the model, its cached output and the publishers (cleanup)."""
        for pub in self._publishers_made:
            self.destroy_lifecycle_publisher(pub)
        self._publishers_made = []
        on_cuda = self.segmenter is not None and str(self.segmenter.device).startswith("cuda")
        with self._lock:
            self.segmenter, self._ggp, self._cached, self.last_result = None, None, None, None
        self._transformer = None
        self.health.device, self.health.model = "none", "not configured"
        if on_cuda:
            import gc

            import torch

            gc.collect()
            torch.cuda.empty_cache()

    def _on_set_query(self, request: Any, response: Any) -> Any:
        try:
            changes = query_changes(request)
        except QueryError as exc:
            response.success, response.message = False, f"refused: {exc}"
        else:
            missing = [name for name in changes if not self.has_parameter(name)]
            if missing:
                response.success, response.message = False, f"refused: this node has no parameter {missing[0]}"
                response.queries = list(self.settings.query_set().positives)
                return response
            result = self.set_parameters_atomically([Parameter(name, value=value) for name, value in changes.items()])
            response.success = bool(result.successful)
            response.message = (
                f"query now {self.settings.queries!r}" if result.successful else f"refused: {result.reason}"
            )
            if result.successful and not self.active:
                response.message += " (used once the node is active)"
        response.queries = list(self.settings.query_set().positives)
        if response.success:  # (rclpy refuses two severities from one logging call site)
            self.get_logger().info(f"~/set_query: {response.message}")
        else:
            self.get_logger().warning(f"~/set_query: {response.message}")
        return response

    # ------------------------------------------------------------------ executor-side callbacks
    def _on_cloud(self, msg: PointCloud2) -> None:
        self.health.input()
        if self._slot.put(_Cloud(msg, time.monotonic())):
            self.health.drop()

    def _on_query_text(self, msg: String) -> None:
        if msg.data == self.settings.queries:
            return  # the same text again (a latched publisher reaches both ~/query subscriptions)
        self._set_query_parameters({"queries": msg.data}, source="~/query")

    def _on_query_msg(self, msg: Any) -> None:
        try:
            qs = query_from_msg(msg, default_threshold=None)
        except QueryError as exc:
            self.get_logger().warning(f"ignored query on ~/structured_query: {exc}")
            return
        changes: dict[str, Any] = {
            "queries": "; ".join(qs.positives),
            "negatives": "; ".join(qs.negatives),
            "use_background": qs.background,
        }
        if not np.isnan(msg.threshold):
            changes["score_threshold"] = float(qs.threshold or 0.0)
        self._set_query_parameters(changes, source="~/structured_query")

    def _set_query_parameters(self, changes: dict[str, Any], source: str) -> None:
        """Queries from topics go through the parameters: one validation, and `ros2 param get` tells."""
        results = self.set_parameters([Parameter(name, value=value) for name, value in changes.items()])
        refused = [r.reason for r in results if not r.successful]
        if refused:
            self.get_logger().warning(f"ignored query on {source}: {refused[0]}; keeping {self.settings.queries!r}")

    def _on_parameters_set(self, params: list[Parameter]) -> None:
        changed = {p.name: p.value for p in params}
        with self._lock:  # writers only: readers take self._current in one read
            current = self._current
            self._current = _Current(
                current.settings.replace(**changed), current.query_version + bool(changed.keys() & QUERY_PARAMETERS)
            )
        self.health.queries = self.settings.queries
        if changed.keys() & QUERY_PARAMETERS:
            self.get_logger().info(f"query now {self.settings.queries!r}")
            self._slot.poke()

    def _publish_diagnostics(self) -> None:
        if self.cloud_sub is not None:
            self.health.set_transport_lost(self.cloud_sub.stats.lost)
        self.diag_pub.publish(self.health.array(self.get_clock().now().to_msg()))

    # ------------------------------------------------------------------------ the worker thread
    def _work(self) -> None:
        while not self._stop.is_set():
            item = self._slot.take(timeout=0.5)
            if self._stop.is_set():
                break
            if item is not None:
                item = self._respect_rate_limit(item)
                if item is None:
                    break
                self._safely(self._process_cloud, item)
                item = None  # drop the message now, not when the next one arrives (it may be MBs)
            elif self._answer_is_stale():
                self._safely(self._answer_cached)

    def _respect_rate_limit(self, item: _Cloud) -> _Cloud | None:
        rate = self.settings.max_rate_hz
        if rate <= 0.0:
            return item
        wait = self._last_start + 1.0 / rate - time.monotonic()
        if wait > 0.0 and self._stop.wait(wait):
            return None
        newer = self._slot.take(timeout=0.0)  # a cloud that came in while waiting replaces this one
        if newer is not None:
            self.health.drop()
            return newer
        return item

    def _safely(self, fn, *args) -> None:
        try:
            fn(*args)
        except Exception as exc:  # keep serving: one bad cloud or one CUDA hiccup must not end the node
            self.health.failure(f"{type(exc).__name__}: {exc}")
            self.get_logger().error(
                f"processing failed: {type(exc).__name__}: {exc}", throttle_duration_sec=WARN_THROTTLE_S
            )

    def _reject(self, reason: str) -> None:
        self.health.reject(reason)
        self.get_logger().warning(f"rejected cloud: {reason}", throttle_duration_sec=WARN_THROTTLE_S)

    def _answer_is_stale(self) -> bool:
        """Whether the query parameters changed since the kept cloud was last answered."""
        cached = self._cached
        return cached is not None and cached.query_version != self._current.query_version

    def _process_cloud(self, item: _Cloud) -> None:
        from ov3d_ros.core.segmenter import InputFeatureError

        self._last_start = time.monotonic()
        current = self._current  # what this whole run uses
        settings = current.settings
        timings: dict[str, float] = {}
        tick = time.perf_counter()
        try:
            scan = cloud_to_scan(item.msg, skip_nans=True)
        except CloudFormatError as exc:
            self._reject(str(exc))
            return
        if len(scan) == 0:
            self._reject("no finite points (an empty, all-NaN or all-inf cloud)")
            return
        received = int(item.msg.width) * int(item.msg.height)
        if len(scan) < received:
            self.get_logger().warning(
                f"dropped {received - len(scan)} of {received} points with non-finite coordinates (NaN or +-inf)",
                throttle_duration_sec=WARN_THROTTLE_S,
            )
        if self._transformer is not None:
            try:
                scan = self._transformer(scan)
            except TransformUnavailable as exc:
                self._reject(str(exc))
                return
        scan = subsample(scan, settings.max_points)
        timings["decode"], tick = _lap(tick)
        try:
            processed = self.segmenter.process(scan, ggp=self._ggp)
        except InputFeatureError as exc:
            self._reject(str(exc))
            return
        timings["process"], tick = _lap(tick)
        header = Header(frame_id=scan.frame_id, stamp=item.msg.header.stamp)
        with self._lock:
            self._cached = _Cached(processed, scan, header, current.query_version)
        result = self.segmenter.query(processed, settings.query_set())
        timings["query"], tick = _lap(tick)
        self._publish(result, scan, header, timings, settings)
        timings["encode_publish"], tick = _lap(tick)
        self._finish(timings, item.received, scan.stamp_ns)

    def _answer_cached(self) -> None:
        current = self._current  # what this whole run uses
        settings = current.settings
        with self._lock:
            cached = self._cached
            if cached is None:
                return  # released meanwhile; the next cloud is answered with the new query
            cached.query_version = current.query_version
        timings: dict[str, float] = {}
        tick = time.perf_counter()
        result = self.segmenter.query(cached.processed, settings.query_set())
        timings["query"], tick = _lap(tick)
        self._publish(result, cached.scan, cached.header, timings, settings)
        timings["encode_publish"], tick = _lap(tick)
        self.last_timings = timings
        self.results_published += 1

    def _finish(self, timings: dict[str, float], received: float, stamp_ns: int) -> None:
        now = time.monotonic()
        age = self.get_clock().now().nanoseconds - stamp_ns
        self.health.output(
            latency_s=now - received,
            processing_s=timings["process"] + timings["query"],
            age_s=age / 1e9 if 0 < age < 3600e9 else None,  # only when the stamp is on our clock
        )
        self.last_timings = timings
        self.results_published += 1

    def _publish(
        self, result: SegmentationResult, scan: Scan, header: Header, timings: dict[str, float], settings: NodeSettings
    ) -> None:
        queries: QuerySet = result.queries
        num_queries = len(queries.positives)
        step = max(1, settings.output_decimation)
        colors = colorize(result.semantic[::step], num_queries, None if scan.colors is None else scan.colors[::step])
        cloud = make_labeled_cloud(
            scan.points[::step],
            colors,
            pack_label(result.semantic[::step], result.instance[::step]),
            result.score[::step],
            frame_id=header.frame_id,
            stamp_ns=scan.stamp_ns,
            msg_factory=self._types,
        )
        tick = time.perf_counter()
        self.cloud_pub.publish(cloud)
        timings["publish_cloud"] = time.perf_counter() - tick
        self.marker_pub.publish(objects_to_markers(result.objects, header, num_queries))
        self.last_result = (result, scan, header)
        if self._msgs is not None:
            self.objects_pub.publish(objects_to_msg(result.objects, header, queries.positives, self._msgs))
        else:
            self.objects_pub.publish(
                String(data=objects_to_json(result.objects, header.frame_id, scan.stamp_ns, queries.positives))
            )

    def destroy_node(self) -> None:
        # the node's own teardown destroys its subscriptions and timers; the process is ending, so a
        # cloud in the middle of the network is not waited for long (launch escalates after 5 s)
        self._stop_worker(timeout_s=2.0)
        super().destroy_node()


def _lap(tick: float) -> tuple[float, float]:
    now = time.perf_counter()
    return now - tick, now


# -------------------------------------------------------------------------------- entry point
def build_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ov3d-segment",
        description="Open-vocabulary 3D segmentation node. ROS arguments go after --ros-args, e.g. "
        "ov3d-segment --ros-args -p queries:='chair; red mug' -r ~/cloud:=/camera/points",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="play the packaged demo recording into the node, print the objects per query, "
        "and write a PNG of the labelled cloud",
    )
    parser.add_argument(
        "--demo-keep-running",
        action="store_true",
        help="with --demo: loop the recording (for RViz) instead of exiting after one pass",
    )
    parser.add_argument("--demo-bag", default=None, help="with --demo: another recording (rosbag2 directory)")
    parser.add_argument("--demo-output", default="ov3d_demo.png", help="with --demo: where the PNG goes")
    parser.add_argument(
        "--no-autostart",
        action="store_true",
        help="leave the node unconfigured for a lifecycle manager (ros2 lifecycle set "
        "/segment_node configure, then activate) instead of configuring and activating it",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv if argv is None else argv)
    non_ros = rclpy.utilities.remove_ros_args(args=argv)[1:]
    parser = build_arg_parser()
    args = parser.parse_args(non_ros)
    if args.demo and args.no_autostart:
        parser.error("--demo needs an active node: leave out --no-autostart")
    rclpy.init(args=argv)
    try:
        try:
            node = SegmentNode()
            if not args.no_autostart:
                node.bring_up()
            else:
                node.get_logger().info(
                    "unconfigured, waiting for a lifecycle manager "
                    f"(ros2 lifecycle set {node.get_fully_qualified_name()} configure)"
                )
        except StartupError as exc:
            print(f"[{NODE_NAME}] cannot start: {exc}", file=sys.stderr, flush=True)
            return 1
        if args.demo:
            from ov3d_ros.node.demo import run_demo

            return run_demo(node, bag=args.demo_bag, output=args.demo_output, keep_running=args.demo_keep_running)
        executor = SingleThreadedExecutor()  # the heavy work runs on the node's own worker thread
        executor.add_node(node)
        try:
            executor.spin()
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # shutting down: see below
            try:
                executor.shutdown()
                node.destroy_node()
            except KeyboardInterrupt:  # a second Ctrl-C (a terminal signals launch and the node alike)
                pass
        return 0
    finally:
        rclpy.try_shutdown()
        # Exiting now: a further Ctrl-C (a terminal signals launch and the node alike, and launch
        # forwards its own) would only interrupt torch's exit handlers with a traceback.
        signal.signal(signal.SIGINT, signal.SIG_IGN)


if __name__ == "__main__":
    sys.exit(main())
