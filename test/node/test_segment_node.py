"""segment_node over real rclpy / Fast DDS, fed the real ScanNet scan.

The network has random weights (a plumbing checkpoint marked untrained): these tests check the
node's wiring, threading and messages, never the quality of its labels.
"""

from __future__ import annotations

import copy
import ctypes
import gc
import json
import os
import resource
import shutil

import numpy as np
import pytest
from node_rig import NodeRig, labels_of
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import String
from visualization_msgs.msg import Marker

from ov3d_ros.io.messages import rclpy_message_types
from ov3d_ros.io.pointcloud2 import read_fields, scan_to_cloud
from ov3d_ros.io.scan import Scan
from ov3d_ros.node.segment_node import SegmentNode, StartupError

RESULT_TIMEOUT_S = 180.0  # a random-weight network on a shared 2-core CPU


@pytest.fixture
def rig(ros_context, plumbing_segmenter):
    rigs: list[NodeRig] = []

    def make(**overrides) -> NodeRig:
        rigs.append(NodeRig(ros_context, plumbing_segmenter, {"device": "cpu", **overrides}))
        return rigs[-1]

    yield make
    for r in rigs:
        r.close()


def _check_result(rig: NodeRig, cloud: PointCloud2, queries: list[str], num_points: int) -> None:
    names = [f.name for f in cloud.fields]
    assert names == ["x", "y", "z", "rgb", "label", "score"]
    types = {f.name: f.datatype for f in cloud.fields}
    assert types["label"] == PointField.UINT32 and types["score"] == PointField.FLOAT32
    assert types["rgb"] == PointField.FLOAT32 and cloud.width * cloud.height == num_points
    assert cloud.header.frame_id == "map"
    semantic, instance, score = labels_of(cloud)
    assert semantic.min() >= 0 and semantic.max() <= len(queries)
    assert np.isfinite(score).all()
    markers = rig.markers[-1].markers
    assert markers[0].action == Marker.DELETEALL
    boxes = [m for m in markers if m.type == Marker.CUBE]
    texts = [m for m in markers if m.type == Marker.TEXT_VIEW_FACING]
    assert len(boxes) == len(texts)
    assert {m.ns for m in boxes} <= set(queries)
    objects = rig.objects[-1]
    if isinstance(objects, String):
        doc = json.loads(objects.data)
        listed = {(o["semantic_id"], o["instance_id"]) for o in doc["objects"]}
        counts = {(o["semantic_id"], o["instance_id"]): o["num_points"] for o in doc["objects"]}
        assert doc["queries"] == queries
    else:
        listed = {(o.semantic_id, o.instance_id) for o in objects.objects}
        counts = {(o.semantic_id, o.instance_id): o.num_points for o in objects.objects}
        assert list(objects.queries) == queries
    assert len(listed) == len(boxes)
    # label packing: every (semantic, instance) pair with an instance is a listed object, with its size
    pairs, sizes = np.unique(np.stack([semantic, instance], 1)[instance > 0], axis=0, return_counts=True)
    assert {tuple(map(int, p)) for p in pairs} == listed
    for pair, size in zip(pairs, sizes):
        assert counts[tuple(map(int, pair))] == size


def test_scannet_scan_in_labeled_cloud_markers_and_objects_out(rig, scannet_cloud, scannet_scan):
    r = rig(queries="chair; table; sofa")
    r.wait_for_match()
    r.cloud_pub.publish(scannet_cloud)
    assert r.spin_until(lambda: r.clouds and r.markers and r.objects, RESULT_TIMEOUT_S), "no result"
    _check_result(r, r.clouds[-1], ["chair", "table", "sofa"], len(scannet_scan))
    xyz = read_fields(r.clouds[-1], ["x", "y", "z"])
    np.testing.assert_array_equal(np.stack([xyz["x"], xyz["y"], xyz["z"]], 1), scannet_scan.points)
    assert r.clouds[-1].header.stamp == scannet_cloud.header.stamp
    assert r.spin_until(lambda: r.diagnostics and r.diagnostic_values()["processed"] == "1", 5.0), "no /diagnostics"
    values = r.diagnostic_values()
    assert values["device"] == "cpu" and "UNTRAINED" in values["model"] and values["dropped"] == "0"


def test_new_query_rescored_without_a_new_cloud(rig, scannet_cloud, scannet_scan):
    r = rig(queries="chair; table")
    r.wait_for_match()
    r.cloud_pub.publish(scannet_cloud)
    assert r.spin_until(lambda: r.clouds and r.markers and r.objects, RESULT_TIMEOUT_S)
    received = r.node.health.received
    r.query_pub.publish(String(data="sofa; lamp; trash can"))
    assert r.spin_until(lambda: min(len(r.clouds), len(r.markers), len(r.objects)) >= 2, 60.0), "no re-query result"
    assert r.node.health.received == received, "a new cloud was processed instead of the cached one"
    assert "process" not in r.node.last_timings  # the network did not run again
    _check_result(r, r.clouds[-1], ["sofa", "lamp", "trash can"], len(scannet_scan))
    assert r.node.get_parameter("queries").value == "sofa; lamp; trash can"
    # a bad query is refused and the previous one stays
    r.query_pub.publish(String(data=" ; "))
    r.spin_for(1.0)
    assert r.node.get_parameter("queries").value == "sofa; lamp; trash can"


def _malformed(good: PointCloud2) -> dict[str, PointCloud2]:
    wrong_step = copy.deepcopy(good)
    wrong_step.point_step = 8  # fields reach beyond the point
    truncated = copy.deepcopy(good)
    truncated.data = bytes(good.data)[: len(good.data) // 2]
    no_xyz = copy.deepcopy(good)
    no_xyz.fields = [f for f in good.fields if f.name != "z"]
    nan_scan = Scan(points=np.full((500, 3), np.nan, np.float32), frame_id="map")
    empty = copy.deepcopy(good)
    empty.width, empty.row_step, empty.data = 0, 0, b""
    return {
        "wrong point_step": wrong_step,
        "truncated data": truncated,
        "missing xyz": no_xyz,
        "NaN only": scan_to_cloud(nan_scan, rclpy_message_types()),
        "empty": empty,
    }


def test_malformed_clouds_are_rejected_and_the_next_good_one_is_served(rig, capfd):
    rng = np.random.default_rng(1)
    scan = Scan(
        points=rng.uniform(0, 3, (4000, 3)).astype(np.float32),
        colors=rng.integers(0, 255, (4000, 3), dtype=np.uint8),
        frame_id="map",
    )
    good = scan_to_cloud(scan, rclpy_message_types())
    r = rig(queries="chair")
    r.wait_for_match()
    bad = _malformed(good)
    for name, msg in bad.items():
        before = r.node.health.rejected
        r.cloud_pub.publish(msg)
        assert r.spin_until(lambda: r.node.health.rejected > before, 20.0), f"{name}: not rejected"
    assert r.node.health.rejected == len(bad) and not r.clouds
    assert r.node._worker.is_alive()
    r.cloud_pub.publish(good)
    assert r.spin_until(lambda: r.clouds and r.markers and r.objects, RESULT_TIMEOUT_S), "good cloud not processed"
    _check_result(r, r.clouds[-1], ["chair"], len(scan))
    err = capfd.readouterr().err
    assert "rejected cloud" in err


def test_burst_of_large_clouds_keeps_memory_bounded_and_counts_drops(rig, scannet_scan):
    """10 Hz of ~3.9 MB clouds (243k points) into a slower worker: newest-only, drops counted."""
    tiled = np.concatenate([scannet_scan.points + [dx, 0.0, 0.0] for dx in (0.0, 8.0, 16.0)]).astype(np.float32)
    big = Scan(points=tiled, colors=np.tile(scannet_scan.colors, (3, 1)), frame_id="map")
    r = rig(queries="chair", max_rate_hz=2.0)
    r.wait_for_match()
    types = rclpy_message_types()
    clouds = []
    for i in range(31):
        big.stamp_ns = 1_000_000_000 * (i + 1)
        clouds.append(scan_to_cloud(big, types))
    # warm-up: one cloud processed, so its cache and torch's allocator pools are in the baseline;
    # what one cloud costs is the yardstick for "does memory grow with the number of clouds"
    rss_start = _rss_mb()
    # clouds alive before the burst (session fixtures of other tests hold some) are not the node's
    earlier = {id(o) for o in gc.get_objects() if type(o) is PointCloud2}
    r.cloud_pub.publish(clouds[0])
    assert r.spin_until(lambda: r.node.results_published == 1, RESULT_TIMEOUT_S)
    rss_before = _rss_mb()
    ours = {id(msg) for msg in clouds} | earlier
    one_cloud_mb = rss_before - rss_start
    for msg in clouds[1:]:  # 3 s at 10 Hz
        r.cloud_pub.publish(msg)
        r.spin_for(0.1)
    health = r.node.health
    assert r.spin_until(
        lambda: not r.node._slot.pending() and health.processed + health.dropped + health.rejected == health.received,
        RESULT_TIMEOUT_S,
    )
    assert health.received >= 21, f"only {health.received} of 31 clouds arrived"
    assert health.dropped > 0 and health.rejected == 0
    growth = _rss_mb() - rss_before
    print(
        f"burst: received {health.received}, processed {health.processed}, dropped {health.dropped}, "
        f"rss growth {growth:.0f} MB (the first cloud cost {one_cloud_mb:.0f} MB)"
    )
    # nothing may be kept per cloud. Exact at the message level: the node holds no received cloud
    # once its slot is empty (the test's own 31, the rig's collected results and older ones excluded) ...
    ours |= {id(msg) for msg in r.clouds}  # the labelled results the rig's subscriber collected

    def held() -> int:  # the worker counts a cloud as processed a moment before it lets go of it
        gc.collect()
        return sum(1 for o in gc.get_objects() if type(o) is PointCloud2 and id(o) not in ours)

    assert r.spin_until(lambda: held() == 0, 5.0), f"{held()} received clouds still alive after the burst"
    # ... and in memory: 30 clouds must not cost what 30 processed ones would (the allocator's
    # freed-but-kept pages are handed back first, so RSS measures what is alive)
    assert growth < max(one_cloud_mb, 200.0), f"RSS grew {growth:.0f} MB over the burst"
    assert r.spin_until(lambda: r.diagnostics and int(r.diagnostic_values()["dropped"]) == health.dropped, 5.0)


def _rss_mb() -> float:
    """Resident memory after gc and glibc's malloc_trim (freed heap pages go back to the OS, so
    the figure tracks live memory rather than the allocator's arenas)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: RSS includes cached free pages
        pass
    with open(f"/proc/{os.getpid()}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def test_decimation_and_threshold_are_dynamic(rig, scannet_cloud, scannet_scan):
    r = rig(queries="chair; table")
    r.wait_for_match()
    r.cloud_pub.publish(scannet_cloud)
    assert r.spin_until(lambda: bool(r.clouds), RESULT_TIMEOUT_S)
    from rclpy.parameter import Parameter

    results = r.node.set_parameters([Parameter("output_decimation", value=4), Parameter("score_threshold", value=1.0)])
    assert all(x.successful for x in results)
    assert r.spin_until(lambda: len(r.clouds) >= 2, 60.0), "threshold change did not re-query"
    cloud = r.clouds[-1]
    assert cloud.width == len(range(0, len(scannet_scan), 4))
    semantic, _, _ = labels_of(cloud)
    assert (semantic == 0).all()  # threshold 1.0: nothing is sure enough
    refused = r.node.set_parameters([Parameter("device", value="cuda")])[0]
    assert not refused.successful


def test_missing_default_checkpoint_stops_start_up_with_one_message(ros_context):
    from ov3d_ros.core.segmenter import DEFAULT_CHECKPOINT

    if (DEFAULT_CHECKPOINT / "model.json").exists():
        pytest.skip("a packaged model is installed; nothing is missing")
    with pytest.raises(StartupError, match="no trained model ships"):
        SegmentNode(context=ros_context).bring_up()


def test_broken_checkpoint_and_random_weights_refused(ros_context, tmp_path, random_checkpoint):
    from rclpy.parameter import Parameter

    with pytest.raises(StartupError, match="no checkpoint at"):
        SegmentNode(
            context=ros_context, parameter_overrides=[Parameter("checkpoint", value=str(tmp_path / "nope"))]
        ).bring_up()
    mismatched = tmp_path / "mismatched"
    shutil.copytree(random_checkpoint, mismatched)
    weights = mismatched / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(StartupError, match="do not match"):
        SegmentNode(
            context=ros_context,
            parameter_overrides=[
                Parameter("checkpoint", value=str(mismatched)),
                Parameter("allow_untrained", value=True),
            ],
        ).bring_up()
    with pytest.raises(StartupError, match="untrained"):
        SegmentNode(
            context=ros_context, parameter_overrides=[Parameter("checkpoint", value=str(random_checkpoint))]
        ).bring_up()
    with pytest.raises(StartupError, match="queries"):
        SegmentNode(context=ros_context, parameter_overrides=[Parameter("queries", value=";")])


def test_ggp_parameters_default_to_the_models_calibrated_setting():
    from ov3d_ros.node.parameters import NodeSettings
    from ov3d_ros.node.segment_node import describe_model, load_segmenter

    settings = NodeSettings.from_values({"device": "cpu"})
    shipped = load_segmenter(settings)  # the packaged model records its calibration in model.json
    calibrated = shipped.metadata.ggp_config()
    assert calibrated is not None and shipped.config.ggp == calibrated == settings.ggp_setting(shipped.config.ggp)
    assert "calibrated" in describe_model(shipped, "default", settings.ggp_setting(shipped.config.ggp))
    tuned = settings.replace(ggp_k=8, ggp_iterations=0).ggp_setting(shipped.config.ggp)  # 0 passes = pooling off
    assert (tuned.k, tuned.tau, tuned.iterations) == (8, calibrated.tau, 0)
    assert ", set)" in describe_model(shipped, "default", tuned)
    assert tuned.coarsen == calibrated.coarsen  # 0 keeps the model's cells
    plain = settings.replace(ggp_coarsen=1).ggp_setting(shipped.config.ggp)  # the node can fall back to plain GGP
    assert plain.coarsen == 1 and (plain.tau, plain.iterations) == (calibrated.tau, calibrated.iterations)
    assert "cells" not in describe_model(shipped, "default", plain)
    assert tuned.centering == calibrated.centering  # -1 keeps the model's centering
    uncentered = settings.replace(ggp_centering=0.0).ggp_setting(shipped.config.ggp)  # 0 is "none", not "the model's"
    assert uncentered.centering == 0.0 and uncentered.coarsen == calibrated.coarsen
    assert shipped.config.ggp == calibrated  # the segmenter's own setting is never changed
