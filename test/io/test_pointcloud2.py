"""PointCloud2 decoding of every layout and encoding of scans / labelled clouds."""

from __future__ import annotations

import array
import struct

import numpy as np
import pytest
from cloud_builders import FieldSpec, pack_cloud, random_values, reference_read

from ov3d_ros.io.errors import CloudFormatError
from ov3d_ros.io.files import load_scan
from ov3d_ros.io.messages import (
    MessageTypes,
    plain_message_types,
    rclpy_available,
    rclpy_message_types,
    rosbags_message_types,
)
from ov3d_ros.io.pointcloud2 import cloud_to_scan, make_labeled_cloud, read_fields, scan_to_cloud
from ov3d_ros.io.scan import Scan, pack_label

INT8, UINT8, INT16, UINT16, INT32, UINT32, FLOAT32, FLOAT64 = range(1, 9)


def _families() -> list:
    families = [pytest.param(plain_message_types, id="plain"), pytest.param(rosbags_message_types, id="rosbags")]
    rclpy_mark = pytest.mark.skipif(not rclpy_available(), reason="rclpy message classes not importable")
    families.append(pytest.param(rclpy_message_types, id="rclpy", marks=rclpy_mark))
    return families


FAMILIES = _families()

# Every datatype, a count>1 field, gaps between fields and trailing padding (point_step 72 > 63).
ALL_TYPES_SPECS = [
    FieldSpec("x", 0, FLOAT32),
    FieldSpec("y", 4, FLOAT32),
    FieldSpec("z", 8, FLOAT64),
    FieldSpec("i8", 17, INT8),
    FieldSpec("u8", 18, UINT8),
    FieldSpec("i16", 20, INT16),
    FieldSpec("u16", 22, UINT16),
    FieldSpec("i32", 24, INT32),
    FieldSpec("u32", 28, UINT32),
    FieldSpec("f64", 33, FLOAT64),  # unaligned on purpose
    FieldSpec("vec", 41, FLOAT32, count=3),
    FieldSpec("pair", 53, INT16, count=2),
    FieldSpec("bytes4", 59, UINT8, count=4),
]
ALL_TYPES_STEP = 72


@pytest.mark.parametrize("big_endian", [False, True], ids=["little", "big"])
@pytest.mark.parametrize(
    ("height", "width", "row_pad"), [(1, 7, 0), (3, 4, 0), (3, 4, 5)], ids=["flat", "organised", "row-padding"]
)
def test_every_datatype_count_padding_and_byte_order(big_endian, height, width, row_pad):
    rng = np.random.default_rng(height * 10 + row_pad + big_endian)
    n = height * width
    values = {s.name: random_values(rng, s, n) for s in ALL_TYPES_SPECS}
    msg = pack_cloud(
        ALL_TYPES_SPECS,
        values,
        height=height,
        width=width,
        point_step=ALL_TYPES_STEP,
        row_step=width * ALL_TYPES_STEP + row_pad,
        big_endian=big_endian,
    )
    decoded = read_fields(msg, backend="numpy")
    reference = reference_read(msg)
    assert list(decoded) == [s.name for s in ALL_TYPES_SPECS]
    for spec in ALL_TYPES_SPECS:
        got = decoded[spec.name]
        assert got.dtype == np.dtype(values[spec.name].dtype).newbyteorder("=")
        assert got.dtype.isnative and got.flags.c_contiguous
        np.testing.assert_array_equal(got, values[spec.name], err_msg=spec.name)
        np.testing.assert_array_equal(got, reference[spec.name], err_msg=spec.name)

    scan = cloud_to_scan(msg, skip_nans=False)
    expected_points = np.stack([values[a].astype(np.float32) for a in "xyz"], axis=1)
    np.testing.assert_array_equal(scan.points, expected_points)
    assert scan.meta.get("organized_shape") == ((height, width) if height > 1 else None)
    np.testing.assert_array_equal(scan.meta["extra_fields"]["vec"], values["vec"])
    assert set(scan.meta["extra_fields"]) == {s.name for s in ALL_TYPES_SPECS} - {"x", "y", "z"}


def test_selected_fields_only():
    rng = np.random.default_rng(1)
    values = {s.name: random_values(rng, s, 5) for s in ALL_TYPES_SPECS}
    msg = pack_cloud(ALL_TYPES_SPECS, values, height=1, width=5, point_step=ALL_TYPES_STEP)
    decoded = read_fields(msg, ["u16", "vec"])
    assert list(decoded) == ["u16", "vec"]
    np.testing.assert_array_equal(decoded["vec"], values["vec"])
    with pytest.raises(CloudFormatError, match="no field 'nope'"):
        read_fields(msg, ["nope"])


XYZRGB = [
    FieldSpec("x", 0, FLOAT32),
    FieldSpec("y", 4, FLOAT32),
    FieldSpec("z", 8, FLOAT32),
    FieldSpec("rgb", 12, FLOAT32),
]


def _xyzrgb_values(n: int, seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    colors = rng.integers(0, 256, size=(n, 3), dtype=np.uint8)
    packed = (colors[:, 0].astype(np.uint32) << 16) | (colors[:, 1].astype(np.uint32) << 8) | colors[:, 2]
    values = {a: rng.normal(size=n).astype(np.float32) for a in "xyz"}
    values["rgb"] = packed.view(np.float32)
    return values, colors


@pytest.mark.parametrize(
    "container",
    [bytes, bytearray, memoryview, lambda b: array.array("B", b), lambda b: np.frombuffer(b, np.uint8).copy(), list],
    ids=["bytes", "bytearray", "memoryview", "array.array", "numpy", "list"],
)
def test_data_container_types(container):
    values, colors = _xyzrgb_values(9)
    msg = pack_cloud(XYZRGB, values, height=1, width=9, point_step=16)
    msg.data = container(bytes(msg.data))
    scan = cloud_to_scan(msg)
    np.testing.assert_array_equal(scan.colors, colors)
    np.testing.assert_array_equal(scan.points[:, 2], values["z"])


@pytest.mark.parametrize("big_endian", [False, True], ids=["little", "big"])
def test_packed_color_layouts_agree(big_endian):
    values, colors = _xyzrgb_values(11, seed=3)
    bits = values["rgb"].view(np.uint32)
    xyz = XYZRGB[:3]
    layouts = {
        "rgb FLOAT32": ([*xyz, FieldSpec("rgb", 12, FLOAT32)], {"rgb": values["rgb"]}),
        "rgb UINT32": ([*xyz, FieldSpec("rgb", 12, UINT32)], {"rgb": bits}),
        # PCL's PointXYZRGBA: alpha 255 makes the float view of these bits NaN; must not matter.
        "rgba UINT32 alpha": ([*xyz, FieldSpec("rgba", 12, UINT32)], {"rgba": bits | np.uint32(0xFF000000)}),
        "rgba FLOAT32 alpha": (
            [*xyz, FieldSpec("rgba", 12, FLOAT32)],
            {"rgba": (bits | np.uint32(0xFF000000)).view(np.float32)},
        ),
        "r g b UINT8": (
            [*xyz, FieldSpec("r", 12, UINT8), FieldSpec("g", 13, UINT8), FieldSpec("b", 14, UINT8)],
            {"r": colors[:, 0], "g": colors[:, 1], "b": colors[:, 2]},
        ),
    }
    for name, (specs, extra) in layouts.items():
        msg = pack_cloud(specs, {**values, **extra}, height=1, width=11, point_step=16, big_endian=big_endian)
        scan = cloud_to_scan(msg)
        np.testing.assert_array_equal(scan.colors, colors, err_msg=name)
        assert "extra_fields" not in scan.meta, name


def test_skip_nans_drops_nan_and_inf_and_keeps_alignment():
    specs = [*XYZRGB, FieldSpec("label", 16, UINT32), FieldSpec("intensity", 20, FLOAT32)]
    values, colors = _xyzrgb_values(12, seed=5)
    values["x"][[1, 4]] = np.nan
    values["y"][7] = np.inf
    values["z"][9] = -np.inf
    values["label"] = pack_label(np.arange(12), np.arange(12) + 100)
    values["intensity"] = np.arange(12, dtype=np.float32)
    msg = pack_cloud(specs, values, height=3, width=4, point_step=24)
    keep = np.array([i not in (1, 4, 7, 9) for i in range(12)])

    scan = cloud_to_scan(msg)
    assert len(scan) == 8 and np.isfinite(scan.points).all()
    np.testing.assert_array_equal(scan.meta["valid_index"], np.flatnonzero(keep))
    np.testing.assert_array_equal(scan.labels, np.arange(12)[keep])
    np.testing.assert_array_equal(scan.instances, np.arange(12)[keep] + 100)
    np.testing.assert_array_equal(scan.colors, colors[keep])
    np.testing.assert_array_equal(scan.meta["extra_fields"]["intensity"], np.flatnonzero(keep).astype(np.float32))
    assert scan.meta["organized_shape"] == (3, 4)

    full = cloud_to_scan(msg, skip_nans=False)
    assert len(full) == 12 and "valid_index" not in full.meta
    fields = read_fields(msg, ["intensity"], skip_nans=True)
    np.testing.assert_array_equal(fields["intensity"], np.flatnonzero(keep).astype(np.float32))


@pytest.mark.parametrize("family", FAMILIES)
def test_empty_cloud_is_an_empty_scan(family):
    types = family()
    msg = pack_cloud([], {}, height=0, width=0, point_step=0, types=types)  # no fields, no points
    scan = cloud_to_scan(msg)
    assert len(scan) == 0 and scan.points.shape == (0, 3)
    with pytest.raises(CloudFormatError, match="no points"):
        cloud_to_scan(msg, allow_empty=False)
    empty = scan_to_cloud(Scan(np.zeros((0, 3)), colors=np.zeros((0, 3), np.uint8), labels=np.zeros(0)), types)
    assert empty.width == 0 and len(empty.data) == 0
    assert len(cloud_to_scan(empty)) == 0


def test_header_and_pcl_style_label():
    specs = [*XYZRGB[:3], FieldSpec("label", 12, UINT32)]
    values = {a: np.arange(4, dtype=np.float32) for a in "xyz"}
    values["label"] = np.array([0, 3, 11, 65535], dtype=np.uint32)  # plain PCL labels < 2**16
    msg = pack_cloud(specs, values, height=1, width=4, point_step=16, frame_id="kinect", stamp_ns=12_000_000_345)
    scan = cloud_to_scan(msg)
    assert scan.frame_id == "kinect" and scan.stamp_ns == 12_000_000_345
    np.testing.assert_array_equal(scan.labels, 0)
    np.testing.assert_array_equal(scan.instances, [0, 3, 11, 65535])


# --- encoding ------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
def test_make_labeled_cloud_layout_is_rviz_and_hydra_compatible(family):
    types: MessageTypes = family()
    rng = np.random.default_rng(2)
    n = 50
    points = rng.normal(size=(n, 3)).astype(np.float32)
    colors = rng.integers(0, 256, size=(n, 3), dtype=np.uint8)
    semantic, instance = rng.integers(0, 300, n), rng.integers(0, 65536, n)
    score = rng.random(n).astype(np.float32)
    msg = make_labeled_cloud(points, colors, pack_label(semantic, instance), score, "map", 7_500_000_001, types)

    assert isinstance(msg, types.point_cloud2)
    assert [(f.name, f.offset, f.datatype, f.count) for f in msg.fields] == [
        ("x", 0, FLOAT32, 1),
        ("y", 4, FLOAT32, 1),
        ("z", 8, FLOAT32, 1),
        ("rgb", 12, FLOAT32, 1),
        ("label", 16, UINT32, 1),
        ("score", 20, FLOAT32, 1),
    ]
    assert (msg.height, msg.width, msg.point_step, msg.row_step) == (1, n, 24, 24 * n)
    assert msg.is_dense is True and msg.is_bigendian is False
    assert msg.header.frame_id == "map" and (msg.header.stamp.sec, msg.header.stamp.nanosec) == (7, 500_000_001)

    raw = bytes(np.frombuffer(msg.data, dtype=np.uint8))
    for i in (0, 17, n - 1):  # read back with struct, as RViz / Hydra would
        x, y, z, rgb_float, label, s = struct.unpack_from("<fffIIf", raw, 24 * i)
        assert (x, y, z) == tuple(points[i].tolist())
        assert rgb_float == (int(colors[i, 0]) << 16) | (int(colors[i, 1]) << 8) | int(colors[i, 2])
        assert label == (int(semantic[i]) << 16) | int(instance[i]) and s == score[i]
    rgb_as_float = np.frombuffer(raw, dtype="<f4").reshape(n, 6)[:, 3]
    assert not np.isnan(rgb_as_float).any(), "alpha 0 keeps the packed colour a real float"

    scan = cloud_to_scan(msg)
    np.testing.assert_array_equal(scan.colors, colors)
    np.testing.assert_array_equal(scan.labels, semantic)
    np.testing.assert_array_equal(scan.instances, instance)
    np.testing.assert_array_equal(scan.meta["extra_fields"]["score"], score)

    bare = make_labeled_cloud(points, None, pack_label(semantic, instance), None, msg_factory=types)
    assert [f.name for f in bare.fields] == ["x", "y", "z", "label"] and bare.point_step == 16
    with pytest.raises(ValueError, match="label must have shape"):
        make_labeled_cloud(points, colors, np.zeros(n - 1, np.uint32), score, msg_factory=types)


@pytest.mark.parametrize("family", FAMILIES)
def test_scannet_npz_to_pointcloud2_to_numpy_is_exact(scannet_npz, family):
    types = family()
    scan = load_scan(scannet_npz)
    msg = scan_to_cloud(scan, types)
    assert [f.name for f in msg.fields] == ["x", "y", "z", "rgb", "label"]
    back = cloud_to_scan(msg)
    np.testing.assert_array_equal(back.points, scan.points)
    np.testing.assert_array_equal(back.colors, scan.colors)
    np.testing.assert_array_equal(back.labels, scan.labels)
    np.testing.assert_array_equal(back.instances, scan.instances)
    raw = np.load(scannet_npz)
    np.testing.assert_array_equal(back.points, raw["xyz"])
    np.testing.assert_array_equal(back.labels, raw["sem_nyu40"])


def test_normals_features_and_organized_round_trip():
    rng = np.random.default_rng(4)
    h, w = 3, 5
    points = rng.normal(size=(h * w, 3)).astype(np.float32)
    points[[2, 7]] = np.nan
    normals = rng.normal(size=(h * w, 3)).astype(np.float32)
    features = rng.normal(size=(h * w, 16)).astype(np.float32)
    scan = Scan(points, normals=normals, features=features, labels=np.arange(15), meta={"organized_shape": (h, w)})
    msg = scan_to_cloud(scan, plain_message_types())
    assert (msg.height, msg.width, msg.is_dense) == (h, w, False)
    assert [(f.name, f.count) for f in msg.fields][-2:] == [("label", 1), ("features", 16)]
    back = cloud_to_scan(msg, skip_nans=False)
    np.testing.assert_array_equal(back.points, points)
    np.testing.assert_array_equal(back.normals, normals)
    np.testing.assert_array_equal(back.features, features)
    np.testing.assert_array_equal(back.instances, 0)  # a missing part is written as 0
    kept = cloud_to_scan(msg)
    np.testing.assert_array_equal(kept.features, np.delete(features, [2, 7], axis=0))
    # an organised scan that lost points is written flat
    assert scan_to_cloud(kept, plain_message_types()).height == 1


def test_scan_to_cloud_refuses_labels_that_do_not_fit_16_bits():
    scan = Scan(np.zeros((3, 3)), labels=np.array([0, 1, 70000]))
    with pytest.raises(ValueError, match="labels spans"):
        scan_to_cloud(scan, plain_message_types())
    with pytest.raises(ValueError, match="instances spans"):
        scan_to_cloud(Scan(np.zeros((2, 3)), instances=np.array([-1, 2])), plain_message_types())


@pytest.mark.skipif(not rclpy_available(), reason="rclpy message classes not importable")
def test_rclpy_serialization_round_trip():
    rclpy_serialization = pytest.importorskip("rclpy.serialization")
    from sensor_msgs.msg import PointCloud2 as RosPointCloud2

    values, colors = _xyzrgb_values(64, seed=9)
    msg = pack_cloud(XYZRGB, values, height=8, width=8, point_step=16, types=rclpy_message_types())
    wire = rclpy_serialization.serialize_message(msg)
    received = rclpy_serialization.deserialize_message(wire, RosPointCloud2)
    scan = cloud_to_scan(received)
    np.testing.assert_array_equal(scan.colors, colors)
    np.testing.assert_array_equal(scan.points[:, 0], values["x"])
    assert scan.meta["organized_shape"] == (8, 8)


def test_plain_messages_have_the_ros_attribute_names():
    from dataclasses import fields

    from ov3d_ros.io import messages
    from ov3d_ros.io.messages import jazzy_typestore

    for name in ("PointCloud2", "PointField", "Header", "Time"):
        ours = {f.name for f in fields(getattr(messages, name))}
        ros_type = {
            "PointCloud2": "sensor_msgs/msg/PointCloud2",
            "PointField": "sensor_msgs/msg/PointField",
            "Header": "std_msgs/msg/Header",
            "Time": "builtin_interfaces/msg/Time",
        }[name]
        ros_class = jazzy_typestore().types[ros_type]
        theirs = {f.name for f in fields(ros_class) if not f.name.isupper() and not f.name.startswith("__")}
        assert ours == theirs, name
    for constant in ("INT8", "UINT8", "INT16", "UINT16", "INT32", "UINT32", "FLOAT32", "FLOAT64"):
        assert getattr(messages.PointField, constant) == getattr(rosbags_message_types().point_field, constant)


def test_without_ros_the_plain_messages_are_used():
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['sensor_msgs'] = None; sys.modules['sensor_msgs.msg'] = None\n"
        "import numpy as np\n"
        "from ov3d_ros.io.messages import default_message_types\n"
        "from ov3d_ros.io.pointcloud2 import cloud_to_scan, make_labeled_cloud\n"
        "types = default_message_types(); assert types.name == 'plain', types.name\n"
        "msg = make_labeled_cloud(np.ones((4, 3)), None, np.arange(4), None)\n"
        "assert isinstance(msg.data, bytes) and len(cloud_to_scan(msg)) == 4\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
