"""The vectorised decoder and sensor_msgs_py.point_cloud2 give identical arrays.

sensor_msgs_py ships with a system ROS 2 (not with the ros-jazzy-* wheels), so the identity
tests run there and are skipped elsewhere; the numpy path is checked against an independent
struct-based reader in test_pointcloud2.py everywhere.
"""

from __future__ import annotations

import numpy as np
import pytest
from cloud_builders import FieldSpec, pack_cloud, random_values

from ov3d_ros.io.errors import CloudFormatError
from ov3d_ros.io.messages import plain_message_types, rclpy_available, rclpy_message_types
from ov3d_ros.io.pointcloud2 import cloud_to_scan, read_fields, sensor_msgs_py_available

INT8, UINT8, INT16, UINT16, INT32, UINT32, FLOAT32, FLOAT64 = range(1, 9)
needs_sensor_msgs_py = pytest.mark.skipif(
    not (sensor_msgs_py_available() and rclpy_available()),
    reason="sensor_msgs_py is not importable (it comes with a system ROS 2, not the ros-jazzy-* wheels)",
)

LAYOUTS = {
    "xyz": ([FieldSpec("x", 0, FLOAT32), FieldSpec("y", 4, FLOAT32), FieldSpec("z", 8, FLOAT32)], 12, 1, 50),
    "xyzrgb padded": (
        [
            FieldSpec("x", 0, FLOAT32),
            FieldSpec("y", 4, FLOAT32),
            FieldSpec("z", 8, FLOAT32),
            FieldSpec("rgb", 16, FLOAT32),
        ],
        32,
        1,
        40,
    ),
    "all types organised": (
        [
            FieldSpec("x", 0, FLOAT64),
            FieldSpec("y", 8, FLOAT64),
            FieldSpec("z", 16, FLOAT64),
            FieldSpec("a", 24, INT8),
            FieldSpec("b", 25, UINT8),
            FieldSpec("c", 26, INT16),
            FieldSpec("d", 28, UINT16),
            FieldSpec("e", 30, INT32),
            FieldSpec("f", 34, UINT32),
            FieldSpec("g", 38, FLOAT32),
        ],
        44,
        4,
        6,
    ),
    "count > 1": (
        [
            FieldSpec("x", 0, FLOAT32),
            FieldSpec("y", 4, FLOAT32),
            FieldSpec("z", 8, FLOAT32),
            FieldSpec("features", 12, FLOAT32, 8),
        ],
        44,
        2,
        5,
    ),
}


def _cloud(name: str, types):
    specs, point_step, height, width = LAYOUTS[name]
    rng = np.random.default_rng(len(name))
    values = {s.name: random_values(rng, s, height * width) for s in specs}
    values["x"][3] = np.nan
    return pack_cloud(specs, values, height=height, width=width, point_step=point_step, types=types)


@needs_sensor_msgs_py
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_numpy_path_matches_sensor_msgs_py_read_points(layout):
    from sensor_msgs_py import point_cloud2

    msg = _cloud(layout, rclpy_message_types())
    theirs = point_cloud2.read_points(msg, skip_nans=False)
    ours = read_fields(msg, backend="numpy")
    for field in msg.fields:
        if field.count == 1:
            expected = theirs[field.name]
        else:
            expected = np.stack([theirs[f"{field.name}_{i}"] for i in range(field.count)], axis=1)
        np.testing.assert_array_equal(ours[field.name], expected)
        assert ours[field.name].dtype == expected.dtype


@needs_sensor_msgs_py
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_backends_give_identical_scans(layout):
    msg = _cloud(layout, rclpy_message_types())
    a = read_fields(msg, backend="numpy")
    b = read_fields(msg, backend="sensor_msgs_py")
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
        assert a[name].dtype == b[name].dtype
    scan_a = cloud_to_scan(msg, backend="numpy")
    scan_b = cloud_to_scan(msg, backend="sensor_msgs_py")
    np.testing.assert_array_equal(scan_a.points, scan_b.points)
    np.testing.assert_array_equal(scan_a.meta["valid_index"], scan_b.meta["valid_index"])


def test_sensor_msgs_py_backend_refuses_what_it_cannot_read_safely():
    # Plain dataclass messages are never passed to sensor_msgs_py (it asserts on the rclpy type);
    # big-endian data would be byte-swapped in the caller's message. The reason is in the error.
    plain = _cloud("xyz", plain_message_types())
    with pytest.raises(CloudFormatError, match="cannot use backend 'sensor_msgs_py'"):
        read_fields(plain, backend="sensor_msgs_py")
    assert read_fields(plain, backend="auto").keys() == {"x", "y", "z"}
    with pytest.raises(ValueError, match="backend must be"):
        read_fields(plain, backend="open3d")
