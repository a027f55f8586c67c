"""Objects -> MarkerArray, and the per-query colours shared with the labelled cloud."""

from __future__ import annotations

import numpy as np
import pytest
from std_msgs.msg import Header
from visualization_msgs.msg import Marker

from ov3d_ros.core.types import DetectedObject
from ov3d_ros.node.markers import MIN_BOX_EDGE_M, label_text, objects_to_markers
from ov3d_ros.node.palette import colorize, query_colors


def _obj(
    query: str, semantic_id: int, instance_id: int, center, size, score: float, yaw: float = 0.0
) -> DetectedObject:
    return DetectedObject(
        query=query,
        semantic_id=semantic_id,
        instance_id=instance_id,
        center=np.asarray(center, float),
        size=np.asarray(size, float),
        orientation=np.array([0.0, 0.0, np.sin(yaw / 2), np.cos(yaw / 2)]),
        centroid=np.asarray(center, float),
        num_points=100,
        score=score,
    )


def test_delete_all_first_then_box_and_label_per_object():
    header = Header(frame_id="map")
    objects = [
        _obj("chair", 1, 1, [1, 2, 0.4], [0.5, 0.5, 0.8], 0.91, yaw=0.3),
        _obj("chair", 1, 2, [3, 2, 0.4], [0.5, 0.6, 0.8], 0.72),
        _obj("red mug", 2, 3, [0, 0, 0.8], [0.1, 0.1, 0.0], 0.55),
    ]
    array = objects_to_markers(objects, header, num_queries=2)
    markers = array.markers
    assert markers[0].action == Marker.DELETEALL
    assert len(markers) == 1 + 2 * len(objects)
    assert all(m.header.frame_id == "map" for m in markers)
    boxes = [m for m in markers if m.type == Marker.CUBE]
    texts = [m for m in markers if m.type == Marker.TEXT_VIEW_FACING]
    assert len(boxes) == len(texts) == 3
    assert [m.ns for m in boxes] == ["chair", "chair", "red mug"]
    ids = [(m.ns, m.id) for m in markers[1:]]
    assert len(set(ids)) == len(ids), "marker ids must be unique within a namespace"
    assert [t.text for t in texts] == ["chair 0.91", "chair 0.72", "red mug 0.55"]
    # box geometry: centre, extent, yaw quaternion
    first = boxes[0]
    assert (first.pose.position.x, first.pose.position.y, first.pose.position.z) == (1.0, 2.0, 0.4)
    assert (first.scale.x, first.scale.y, first.scale.z) == (0.5, 0.5, 0.8)
    assert first.pose.orientation.z == pytest.approx(np.sin(0.15))
    assert boxes[2].scale.z == MIN_BOX_EDGE_M  # flat object still visible
    # label floats above its box
    assert texts[0].pose.position.z > first.pose.position.z + first.scale.z / 2
    # colours are the query's, the same table the cloud uses
    table = query_colors(2)
    assert (round(boxes[2].color.r * 255), round(boxes[2].color.g * 255), round(boxes[2].color.b * 255)) == tuple(
        table[2]
    )
    assert 0 < boxes[0].color.a < 1 and texts[0].color.a == 1.0


def test_no_objects_still_clears_old_markers():
    array = objects_to_markers([], Header(frame_id="odom"), num_queries=3)
    assert [m.action for m in array.markers] == [Marker.DELETEALL]


def test_object_outside_the_query_list_is_refused():
    with pytest.raises(ValueError, match="semantic_id 3"):
        objects_to_markers([_obj("x", 3, 1, [0, 0, 0], [1, 1, 1], 0.5)], Header(), num_queries=2)


def test_label_text_rounds_score():
    assert label_text(_obj("trash can", 1, 1, [0, 0, 0], [1, 1, 1], 0.666)) == "trash can 0.67"


def test_colorize_uses_query_colors_and_dims_background():
    semantic = np.array([0, 1, 2, 0, 2], dtype=np.int32)
    rgb_in = np.full((5, 3), 200, dtype=np.uint8)
    out = colorize(semantic, 2, rgb_in)
    table = query_colors(2)
    assert out.dtype == np.uint8 and out.shape == (5, 3)
    np.testing.assert_array_equal(out[[1, 2, 4]], table[[1, 2, 2]])
    assert (out[[0, 3]] == 70).all()  # 200 * 0.35
    np.testing.assert_array_equal(colorize(semantic, 2)[0], table[0])
    with pytest.raises(ValueError):
        colorize(np.array([3]), 2)


def test_palette_is_distinct_and_stable():
    table = query_colors(20)
    assert len({tuple(c) for c in table[1:]}) == 20
    np.testing.assert_array_equal(query_colors(3), query_colors(25)[:4])
