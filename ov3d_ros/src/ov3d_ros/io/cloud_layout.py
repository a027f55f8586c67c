"""Check a PointCloud2 before any byte of it is trusted: the first step of decoding.

:func:`describe_cloud` reads the layout fields of any duck-typed PointCloud2 (rclpy, rosbags or the
plain dataclasses), checks them against each other and against ``data``, and returns a
:class:`CloudLayout` -- the checked numbers and the bytes -- that the next step
(:mod:`.cloud_views`) works from without touching the message's header again.
:func:`read_header` checks the frame and stamp. Every problem raises :class:`CloudFormatError`
with the numbers a producer needs to fix its message.
"""

from __future__ import annotations

import array
import operator
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any

import numpy as np

from .errors import CloudFormatError
from .messages import stamp_to_ns

# sensor_msgs/msg/PointField datatype -> (name, numpy type code without byte order)
DATATYPES: dict[int, tuple[str, str]] = {
    1: ("INT8", "i1"),
    2: ("UINT8", "u1"),
    3: ("INT16", "i2"),
    4: ("UINT16", "u2"),
    5: ("INT32", "i4"),
    6: ("UINT32", "u4"),
    7: ("FLOAT32", "f4"),
    8: ("FLOAT64", "f8"),
}
DATATYPE_BY_NAME = {name: code for code, (name, _) in DATATYPES.items()}
INT8, UINT8, INT16, UINT16, INT32, UINT32, FLOAT32, FLOAT64 = range(1, 9)

_DATATYPE_HELP = ", ".join(f"{code} ({name})" for code, (name, _) in DATATYPES.items())
# Same naming as sensor_msgs_py for fields whose name is empty.
UNNAMED_FIELD_PREFIX = "unnamed_field"


@dataclass(frozen=True)
class FieldLayout:
    """One PointField, checked: ``count`` values of ``datatype`` starting at ``offset``."""

    name: str
    offset: int
    datatype: int
    count: int

    @property
    def type_code(self) -> str:
        return DATATYPES[self.datatype][1]

    @property
    def itemsize(self) -> int:
        return int(self.type_code[1:])

    @property
    def end(self) -> int:
        return self.offset + self.itemsize * self.count

    def describe(self) -> str:
        return f"'{self.name}' ({DATATYPES[self.datatype][0]} x{self.count} at offset {self.offset})"


@dataclass(frozen=True)
class CloudLayout:
    """The checked geometry of a PointCloud2 message, and its bytes."""

    height: int
    width: int
    point_step: int
    row_step: int
    is_bigendian: bool
    fields: tuple[FieldLayout, ...]
    # read once here, where its length is checked, so that viewing the fields need not read it again
    data: np.ndarray = dataclass_field(repr=False, compare=False)  # 1-D read-only uint8 view of ``data``

    @property
    def num_points(self) -> int:
        return self.height * self.width

    @property
    def byte_order(self) -> str:
        return ">" if self.is_bigendian else "<"

    @property
    def has_row_padding(self) -> bool:
        return self.height > 0 and self.row_step != self.width * self.point_step

    def field(self, name: str) -> FieldLayout | None:
        for f in self.fields:
            if f.name == name:
                return f
        return None

    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    def has_xyz(self) -> bool:
        return all(self.field(axis) is not None for axis in "xyz")


def _count(value: Any, what: str) -> int:
    """A non-negative integer header value (numpy integers and bools accepted)."""
    try:
        number = operator.index(value)
    except TypeError:
        raise CloudFormatError(f"{what} must be an integer, got {value!r}") from None
    if number < 0:
        raise CloudFormatError(f"{what} must be >= 0, got {number}")
    return number


def _flag(value: Any, what: str) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)) and value in (0, 1):
        return bool(value)
    raise CloudFormatError(f"{what} must be a bool, got {value!r}")


def message_attr(msg: Any, name: str) -> Any:
    try:
        return getattr(msg, name)
    except AttributeError:
        raise CloudFormatError(
            f"{type(msg).__name__} has no attribute '{name}': expected a sensor_msgs/msg/PointCloud2"
        ) from None
    except Exception as exc:  # a broken property on a foreign message class
        raise CloudFormatError(f"reading '{name}' of {type(msg).__name__} failed: {exc}") from exc


def _read_field(index: int, raw: Any, point_step: int) -> FieldLayout:
    where = f"fields[{index}]"
    name = message_attr(raw, "name")
    if not isinstance(name, str):
        raise CloudFormatError(f"{where}.name must be a string, got {name!r}")
    name = name or f"{UNNAMED_FIELD_PREFIX}_{index}"
    offset = _count(message_attr(raw, "offset"), f"field '{name}' offset")
    datatype = _count(message_attr(raw, "datatype"), f"field '{name}' datatype")
    count = _count(message_attr(raw, "count"), f"field '{name}' count")
    if datatype not in DATATYPES:
        raise CloudFormatError(f"field '{name}' has datatype {datatype}; PointField datatypes are {_DATATYPE_HELP}")
    if count < 1:
        raise CloudFormatError(f"field '{name}' has count {count}; count must be >= 1 (1 for a scalar)")
    layout = FieldLayout(name, offset, datatype, count)
    if layout.end > point_step:
        raise CloudFormatError(
            f"field {layout.describe()} ends at byte {layout.end} but point_step is {point_step}: "
            "the field overruns the point"
        )
    return layout


def as_byte_buffer(data: Any) -> np.ndarray:
    """``data`` of any message family as a read-only 1-D uint8 view (copied only for lists).

    rclpy gives ``array.array('B')`` (or bytes), rosbags a numpy uint8 array, hand-made messages
    bytes/bytearray/memoryview or a list of ints.
    """
    if isinstance(data, np.ndarray):
        if data.dtype.kind not in "biuf" or data.dtype.hasobject:
            raise CloudFormatError(f"data must hold bytes, got a numpy array of {data.dtype}")
        flat = np.ascontiguousarray(data).reshape(-1)
        return flat.view(np.uint8)
    if isinstance(data, (bytes, bytearray, memoryview, array.array)):
        try:
            return np.frombuffer(data, dtype=np.uint8)
        except (ValueError, TypeError) as exc:  # e.g. a non-contiguous memoryview
            raise CloudFormatError(f"data cannot be read as bytes: {exc}") from exc
    if isinstance(data, (list, tuple)):
        values = np.asarray(data)
        if values.size == 0:
            return np.zeros(0, dtype=np.uint8)
        if values.ndim != 1 or values.dtype.kind not in "iu" or values.min() < 0 or values.max() > 255:
            raise CloudFormatError("data given as a sequence must hold integers in [0, 255]")
        return values.astype(np.uint8)
    raise CloudFormatError(
        f"data must be bytes, bytearray, array.array('B') or a uint8 numpy array, got {type(data).__name__}"
    )


def describe_cloud(msg: Any, *, require_xyz: bool = True) -> CloudLayout:
    """Validate ``msg`` and return its layout; raise :class:`CloudFormatError` if it can't be trusted.

    Checked: header integers are non-negative integers; every field has a known datatype,
    count >= 1 and fits inside ``point_step``; field names are unique; ``point_step`` > 0 when
    there are points; ``row_step`` >= ``width * point_step``; ``len(data) == height * row_step``;
    x, y and z exist (when ``require_xyz`` and the cloud has points) and are scalars.

    An empty cloud (``width * height == 0``) is valid: it decodes to zero points.
    """
    height = _count(message_attr(msg, "height"), "height")
    width = _count(message_attr(msg, "width"), "width")
    point_step = _count(message_attr(msg, "point_step"), "point_step")
    row_step = _count(message_attr(msg, "row_step"), "row_step")
    is_bigendian = _flag(message_attr(msg, "is_bigendian"), "is_bigendian")
    raw_fields = message_attr(msg, "fields")
    try:
        raw_fields = list(raw_fields)
    except TypeError:
        raise CloudFormatError(f"fields must be a list of PointField, got {type(raw_fields).__name__}") from None

    fields = tuple(_read_field(i, raw, point_step) for i, raw in enumerate(raw_fields))
    seen: set[str] = set()
    for f in fields:
        if f.name in seen:
            raise CloudFormatError(f"field name '{f.name}' appears twice; field names must be unique")
        seen.add(f.name)

    layout = CloudLayout(
        height, width, point_step, row_step, is_bigendian, fields, as_byte_buffer(message_attr(msg, "data"))
    )
    num_points = layout.num_points
    data_len = len(layout.data)
    geometry = f"(height={height}, width={width}, point_step={point_step}, row_step={row_step})"

    if num_points > 0:
        if point_step == 0:
            raise CloudFormatError(f"point_step is 0 but the cloud has {num_points} points {geometry}")
        if row_step < width * point_step:
            raise CloudFormatError(
                f"row_step {row_step} is less than width*point_step = {width * point_step} {geometry}: "
                "set row_step = width*point_step"
            )
    expected = height * row_step if num_points > 0 else 0
    if data_len != expected:
        if num_points > 0 and row_step == width * point_step:
            rule = f"width*height*point_step = {expected}"
        else:
            rule = f"height*row_step = {expected}"
        raise CloudFormatError(f"data has {data_len} bytes but {rule} {geometry}")

    if require_xyz and num_points > 0:
        missing = [axis for axis in "xyz" if layout.field(axis) is None]
        if missing:
            raise CloudFormatError(
                f"cloud has no field {', '.join(repr(m) for m in missing)} "
                f"(fields: {', '.join(layout.names()) or 'none'}); x, y and z are required"
            )
    for axis in "xyz":
        coordinate = layout.field(axis)
        if coordinate is not None and coordinate.count != 1:
            raise CloudFormatError(f"field {coordinate.describe()} must be a scalar (count 1)")
    return layout


def read_header(msg: Any) -> tuple[str, int]:
    """``(frame_id, stamp in ns)`` of a PointCloud2; CloudFormatError if either is malformed."""
    header = message_attr(msg, "header")
    frame_id = message_attr(header, "frame_id")
    if not isinstance(frame_id, str):
        raise CloudFormatError(f"header.frame_id must be a string, got {frame_id!r}")
    try:
        stamp_ns = stamp_to_ns(message_attr(header, "stamp"))
    except (AttributeError, TypeError, ValueError) as exc:
        raise CloudFormatError(f"header.stamp must hold integer sec and nanosec: {exc}") from exc
    return frame_id, stamp_ns
