"""Malformed PointCloud2 messages raise CloudFormatError with actionable text; fuzzing never crashes."""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import pytest
from cloud_builders import FieldSpec, pack_cloud
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ov3d_ros.io.errors import CloudFormatError
from ov3d_ros.io.messages import PointCloud2, PointField
from ov3d_ros.io.pointcloud2 import cloud_to_scan, read_fields, validate_cloud
from ov3d_ros.io.scan import Scan

FLOAT32, UINT32 = 7, 6
XYZ = [FieldSpec("x", 0, FLOAT32), FieldSpec("y", 4, FLOAT32), FieldSpec("z", 8, FLOAT32)]


def _good(n: int = 100, point_step: int = 16) -> PointCloud2:
    values = {a: np.zeros(n, np.float32) for a in "xyz"}
    return pack_cloud(XYZ, values, height=1, width=n, point_step=point_step)


def _with_fields(msg: PointCloud2, *fields: tuple) -> PointCloud2:
    return replace(msg, fields=[PointField(*f) for f in fields])


CASES = {
    "short data": (
        lambda: replace(_good(), data=_good().data[:1200]),
        "data has 1200 bytes but width*height*point_step = 1600 (height=1, width=100, point_step=16, row_step=1600)",
    ),
    "long data": (
        lambda: replace(_good(), data=_good().data + b"\0"),
        "data has 1601 bytes but width*height*point_step = 1600",
    ),
    "field overruns point_step": (
        lambda: replace(_good(point_step=12), point_step=10, row_step=1000, data=bytes(1000)),
        "field 'z' (FLOAT32 x1 at offset 8) ends at byte 12 but point_step is 10",
    ),
    "count overruns point_step": (
        lambda: _with_fields(_good(), ("x", 0, 7, 1), ("y", 4, 7, 1), ("z", 8, 7, 1), ("f", 12, 7, 2)),
        "field 'f' (FLOAT32 x2 at offset 12) ends at byte 20 but point_step is 16",
    ),
    "unknown datatype": (
        lambda: _with_fields(_good(), ("x", 0, 7, 1), ("y", 4, 7, 1), ("z", 8, 9, 1)),
        "field 'z' has datatype 9; PointField datatypes are 1 (INT8), 2 (UINT8)",
    ),
    "count zero": (lambda: _with_fields(_good(), ("x", 0, 7, 0)), "field 'x' has count 0; count must be >= 1"),
    "missing z": (
        lambda: _with_fields(_good(), ("x", 0, 7, 1), ("y", 4, 7, 1)),
        "cloud has no field 'z' (fields: x, y)",
    ),
    "vector x": (
        lambda: _with_fields(_good(), ("x", 0, 7, 3), ("y", 4, 7, 1), ("z", 8, 7, 1)),
        "field 'x' (FLOAT32 x3 at offset 0) must be a scalar",
    ),
    "duplicate names": (
        lambda: _with_fields(_good(), ("x", 0, 7, 1), ("y", 4, 7, 1), ("z", 8, 7, 1), ("y", 12, 7, 1)),
        "field name 'y' appears twice",
    ),
    "row_step too small": (
        lambda: replace(_good(), row_step=800),
        "row_step 800 is less than width*point_step = 1600",
    ),
    "row padding but data unpadded": (
        lambda: replace(_good(n=10), height=2, width=5, row_step=90),
        "data has 160 bytes but height*row_step = 180",
    ),
    "zero point_step": (
        lambda: replace(_good(), point_step=0, fields=[]),
        "point_step is 0 but the cloud has 100 points",
    ),
    "negative width": (lambda: replace(_good(), width=-3), "width must be >= 0, got -3"),
    "float height": (lambda: replace(_good(), height=1.5), "height must be an integer, got 1.5"),
    "string data": (
        lambda: replace(_good(), data="abc"),
        "data must be bytes, bytearray, array.array('B') or a uint8 numpy array, got str",
    ),
    "data list out of range": (lambda: replace(_good(n=1), data=[0] * 15 + [256]), "integers in [0, 255]"),
    "not a cloud": (
        lambda: Scan(np.zeros((1, 3))),
        "Scan has no attribute 'height': expected a sensor_msgs/msg/PointCloud2",
    ),
    "non-string name": (lambda: _with_fields(_good(), (7, 0, 7, 1)), "fields[0].name must be a string, got 7"),
    "fields not a list": (lambda: replace(_good(), fields=3), "fields must be a list of PointField, got int"),
    "bad endianness flag": (lambda: replace(_good(), is_bigendian="yes"), "is_bigendian must be a bool"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_messages_raise_actionable_errors(case):
    build, expected = CASES[case]
    msg = build()
    for decode in (validate_cloud, cloud_to_scan, lambda m: read_fields(m, skip_nans=True)):
        with pytest.raises(CloudFormatError) as caught:
            decode(msg)
        assert expected in str(caught.value)


def test_cloud_format_error_is_a_value_error():
    assert issubclass(CloudFormatError, ValueError)


def test_bad_header_is_reported():
    msg = replace(_good(n=1), header=None)
    with pytest.raises(CloudFormatError, match="NoneType has no attribute 'frame_id'"):
        cloud_to_scan(msg)


def test_non_integer_label_is_kept_with_a_warning():
    specs = [*XYZ, FieldSpec("label", 12, FLOAT32)]
    msg = pack_cloud(specs, {"x": [1.0], "y": [2.0], "z": [3.0], "label": [4.5]}, height=1, width=1, point_step=16)
    with pytest.warns(UserWarning, match="not an integer label"):
        scan = cloud_to_scan(msg)
    assert scan.labels is None and scan.meta["extra_fields"]["label"][0] == np.float32(4.5)


# --- fuzzing -----------------------------------------------------------------------------------
NAMES = st.sampled_from(["x", "y", "z", "rgb", "rgba", "label", "features", "normal_x", "r", "g", "b", "", "i"])
WILD = st.one_of(st.none(), st.text(max_size=3), st.floats(allow_nan=True), st.integers(-(2**40), 2**40), st.booleans())


@st.composite
def fields(draw, point_step: int) -> list:
    count = draw(st.integers(0, 6))
    out = []
    for _ in range(count):
        name = draw(st.one_of(NAMES, st.text(max_size=4)))
        if draw(st.integers(0, 9)) == 0:
            name = draw(WILD)
        datatype = draw(st.one_of(st.integers(1, 8), st.integers(-2, 12)))
        size = {1: 1, 2: 1, 3: 2, 4: 2, 5: 4, 6: 4, 7: 4, 8: 8}.get(datatype, 4)
        cnt = draw(st.one_of(st.just(1), st.integers(-1, 5), st.integers(2**30, 2**33)))
        offset = draw(st.one_of(st.integers(0, max(point_step - size, 0)), st.integers(-4, point_step + 8)))
        out.append(PointField(name=name, offset=offset, datatype=datatype, count=cnt))
    return out


@st.composite
def random_clouds(draw) -> PointCloud2:
    """Anything goes: most of these are invalid somewhere."""
    height = draw(st.integers(0, 4))
    width = draw(st.integers(0, 6))
    point_step = draw(st.integers(0, 40))
    row_step = draw(st.one_of(st.just(width * point_step), st.integers(0, 300)))
    field_list = draw(fields(point_step))
    if draw(st.booleans()):
        field_list[:0] = [PointField("x", 0, 7, 1), PointField("y", 4, 7, 1), PointField("z", 8, 7, 1)]
    size = height * row_step
    data_length = draw(st.one_of(st.just(size), st.integers(0, 400), st.just(max(size - 1, 0))))
    data = draw(st.binary(min_size=min(data_length, 2000), max_size=min(data_length, 2000)))
    return PointCloud2(
        height=height,
        width=width,
        fields=field_list,
        is_bigendian=draw(st.booleans()),
        point_step=point_step,
        row_step=row_step,
        data=data,
    )


@st.composite
def valid_clouds(draw) -> PointCloud2:
    """Consistent layouts filled with random bytes (NaN, Inf, odd colours and labels included)."""
    xyz_type = draw(st.sampled_from([7, 8, 5, 1]))
    size = {1: 1, 5: 4, 7: 4, 8: 8}[xyz_type]
    point_step = 3 * size + draw(st.integers(0, 24))
    specs = [PointField(a, i * size, xyz_type, 1) for i, a in enumerate("xyz")]
    for name in draw(st.lists(NAMES.filter(lambda n: n not in ("x", "y", "z", "")), unique=True, max_size=5)):
        datatype = draw(st.integers(1, 8))
        item = {1: 1, 2: 1, 3: 2, 4: 2, 5: 4, 6: 4, 7: 4, 8: 8}[datatype]
        count = draw(st.integers(1, 4))
        if item * count > point_step:
            continue
        specs.append(PointField(name, draw(st.integers(0, point_step - item * count)), datatype, count))
    height, width = draw(st.integers(0, 4)), draw(st.integers(0, 8))
    row_step = width * point_step + draw(st.sampled_from([0, 0, 5]))
    data = draw(st.binary(min_size=height * row_step, max_size=height * row_step))
    container = draw(st.sampled_from([bytes, bytearray, lambda b: np.frombuffer(b, np.uint8), list]))
    return PointCloud2(
        height=height,
        width=width,
        fields=specs,
        is_bigendian=draw(st.booleans()),
        point_step=point_step,
        row_step=row_step,
        data=container(data),
    )


@st.composite
def clouds(draw) -> PointCloud2:
    msg = draw(st.one_of(valid_clouds(), valid_clouds(), random_clouds()))
    if draw(st.integers(0, 3)) == 0:  # one wild attribute
        attr = draw(st.sampled_from(["height", "width", "point_step", "row_step", "is_bigendian", "data", "fields"]))
        setattr(msg, attr, draw(WILD))
    return msg


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(clouds(), st.booleans())
def test_fuzzed_messages_decode_or_raise_cloud_format_error(msg, skip_nans):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # odd colour/label types warn by design
        for decode in (cloud_to_scan, read_fields):
            try:
                result = decode(msg, skip_nans=skip_nans)
            except CloudFormatError as exc:
                assert str(exc)
                continue
            if isinstance(result, Scan):
                assert result.points.dtype == np.float32 and result.points.shape[1] == 3
                if skip_nans:
                    assert np.isfinite(result.points).all()
            else:
                assert all(isinstance(v, np.ndarray) for v in result.values())


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_fuzzed_truncation_of_valid_clouds(data):
    n = data.draw(st.integers(1, 20))
    msg = _good(n=n)
    cut = data.draw(st.integers(0, len(msg.data) - 1))
    with pytest.raises(CloudFormatError, match=f"data has {cut} bytes"):
        cloud_to_scan(replace(msg, data=msg.data[:cut]))
