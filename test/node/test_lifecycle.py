"""segment_node as a managed node: each transition's effect, over real rclpy / Fast DDS.

Also the non-finite coordinates rule (NaN and +-inf points dropped and counted) and the
SetQuery request rules, which need no node.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from node_rig import NodeRig
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter

from ov3d_ros.core.types import QueryError
from ov3d_ros.io.messages import rclpy_message_types
from ov3d_ros.io.pointcloud2 import scan_to_cloud
from ov3d_ros.io.scan import Scan
from ov3d_ros.node.query_service import query_changes
from ov3d_ros.node.segment_node import SegmentNode

RESULT_TIMEOUT_S = 180.0


def _cloud(n: int = 3000, seed: int = 2):
    rng = np.random.default_rng(seed)
    scan = Scan(
        points=rng.uniform(0, 3, (n, 3)).astype(np.float32),
        colors=rng.integers(0, 255, (n, 3), dtype=np.uint8),
        frame_id="map",
    )
    return scan, scan_to_cloud(scan, rclpy_message_types())


@pytest.fixture
def rig(ros_context, plumbing_segmenter):
    r = NodeRig(ros_context, plumbing_segmenter, {"device": "cpu", "queries": "chair"})
    yield r
    r.close()


def test_deactivate_stops_input_and_output_activate_resumes_cleanup_releases(rig):
    _, cloud = _cloud()
    rig.wait_for_match()
    rig.cloud_pub.publish(cloud)
    assert rig.spin_until(lambda: rig.clouds, RESULT_TIMEOUT_S), "no result while active"

    assert rig.node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
    assert rig.spin_until(lambda: rig.cloud_pub.get_subscription_count() == 0, 10.0), "still subscribed when inactive"
    assert not rig.node._worker and not rig.node.active
    received = rig.node.health.received
    rig.cloud_pub.publish(cloud)
    rig.spin_for(1.0)
    assert rig.node.health.received == received and len(rig.clouds) == 1

    assert rig.node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    rig.wait_for_match()
    rig.cloud_pub.publish(cloud)
    assert rig.spin_until(lambda: len(rig.clouds) == 2, RESULT_TIMEOUT_S), "no result after re-activation"

    assert rig.node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
    assert rig.node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
    assert rig.node.segmenter is None and rig.node._cached is None and rig.node.last_result is None
    assert not rig.node.get_publishers_info_by_topic("/segment_node/labeled_cloud")
    # configure again (the injected Segmenter is reused) and serve
    rig.node.bring_up()
    rig.wait_for_match()
    rig.cloud_pub.publish(cloud)
    assert rig.spin_until(lambda: len(rig.clouds) == 3, RESULT_TIMEOUT_S), "no result after cleanup + bring-up"


def test_bad_checkpoint_fails_configure_with_the_reason_and_the_node_stays(ros_context, tmp_path, capfd):
    node = SegmentNode(context=ros_context, parameter_overrides=[Parameter("checkpoint", value=str(tmp_path / "nope"))])
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert "no checkpoint at" in node.transition_error and node.segmenter is None
        assert "configure failed: no checkpoint at" in capfd.readouterr().err
        assert node.get_parameter("queries").value  # still a node: parameters answer
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE  # and may be tried again
    finally:
        node.destroy_node()


def test_non_finite_points_are_dropped_and_counted(rig, capfd):
    scan, _ = _cloud(4000, seed=3)
    points = scan.points.copy()
    points[:7, 0] = np.inf
    points[7:12, 2] = -np.inf
    points[12:20, 1] = np.nan
    bad = scan_to_cloud(Scan(points=points, colors=scan.colors, frame_id="map"), rclpy_message_types())
    rig.wait_for_match()
    rig.cloud_pub.publish(bad)
    assert rig.spin_until(lambda: rig.clouds, RESULT_TIMEOUT_S), "cloud with inf points not served"
    assert rig.clouds[-1].width * rig.clouds[-1].height == 4000 - 20 and rig.node.health.rejected == 0
    assert "dropped 20 of 4000 points with non-finite coordinates (NaN or +-inf)" in capfd.readouterr().err


def _request(positives=("chair",), negatives=(), threshold=math.nan, background=0, vocabulary=0):
    return SimpleNamespace(
        positives=list(positives),
        negatives=list(negatives),
        threshold=threshold,
        background=background,
        vocabulary=vocabulary,
    )


def test_set_query_request_rules():
    assert query_changes(_request(["sofa", "red mug"])) == {"queries": "sofa; red mug"}
    assert query_changes(_request(["sofa"], ["wall"], 0.3, 2)) == {
        "queries": "sofa",
        "negatives": "wall",
        "score_threshold": pytest.approx(0.3),
        "use_background": False,
    }
    assert query_changes(_request(background=1))["use_background"] is True
    assert query_changes(_request(vocabulary=2))["use_vocabulary"] is False
    for request, reason in [
        (_request([]), "no positives"),
        (_request([" "]), "no positives"),
        (_request(["a; b"]), "may not contain ';'"),
        (_request(threshold=1.5), "0..1"),
        (_request(background=7), "background must be"),
        (_request(vocabulary=3), "vocabulary must be"),
    ]:
        with pytest.raises(QueryError, match=reason):
            query_changes(request)
