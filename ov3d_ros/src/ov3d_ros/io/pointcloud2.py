"""sensor_msgs/msg/PointCloud2 <-> numpy and :class:`Scan`, for any message family.

Decoding (:func:`cloud_to_scan`, :func:`read_fields`) is three steps, each in its own module and
called in this order from here, none calling back:

1. :mod:`.cloud_layout`: check the message's numbers against each other and against ``data``
   (and, for a Scan, its header); a message that cannot be trusted raises
   :class:`CloudFormatError` (see :func:`~.cloud_layout.describe_cloud` for what is checked);
2. :mod:`.cloud_views`: view each field over the bytes, vectorised (numpy, or
   ``sensor_msgs_py.point_cloud2.read_points`` where a system ROS 2 has it and it reads the message
   safely; both give identical arrays);
3. :mod:`.field_conventions`: PCL's field names -> a :class:`Scan` (x/y/z, packed rgb/rgba,
   normal_x/y/z, ``label`` = semantic << 16 | instance, ``features`` (FLOAT32, count D)); points
   with a non-finite coordinate are dropped there, their indices kept in ``meta["valid_index"]``.

Messages are duck-typed: rclpy's classes, rosbags' typestore classes and
:mod:`ov3d_ros.io.messages`' dataclasses all work, with ``data`` as bytes, bytearray,
``array.array('B')``, memoryview or a uint8 numpy array. An empty cloud (``width * height == 0``)
is not an error: it decodes to zero points unless ``allow_empty=False``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .cloud_layout import FLOAT32, UINT32, CloudLayout, FieldLayout, describe_cloud, read_header
from .cloud_views import Backend, field_views, sensor_msgs_py_available
from .errors import CloudFormatError
from .field_conventions import NORMALS, XYZ, fields_to_scan, native_copy, pack_rgb, unpack_rgb
from .messages import MessageTypes, default_message_types, make_header
from .scan import INSTANCE_MASK, Scan, pack_label


# --- decoding ----------------------------------------------------------------------------------
def validate_cloud(msg: Any, *, require_xyz: bool = True) -> None:
    """Raise :class:`CloudFormatError` unless ``msg`` is a PointCloud2 whose bytes can be trusted."""
    describe_cloud(msg, require_xyz=require_xyz)


def cloud_to_scan(
    msg: Any,
    skip_nans: bool = True,
    *,
    allow_empty: bool = True,
    backend: Backend = "auto",
) -> Scan:
    """Decode a PointCloud2 into a :class:`Scan` (see the module doc for the steps and field names).

    ``skip_nans``: drop points whose x, y or z is not finite; ``meta["valid_index"]`` then maps
    each kept point to its index in the message (row-major for organised clouds), so per-pixel
    data stays aligned. Organised clouds (height > 1) keep ``meta["organized_shape"] = (h, w)``.
    ``allow_empty=False`` turns a cloud without points into a CloudFormatError.
    """
    layout = describe_cloud(msg, require_xyz=True)  # 1. check
    frame_id, stamp_ns = read_header(msg)
    n = layout.num_points
    if n == 0 and not allow_empty:
        raise CloudFormatError(
            f"cloud has no points (height={layout.height}, width={layout.width}); nothing to segment"
        )
    shape = (layout.height, layout.width)
    if n == 0:
        empty = {axis: np.zeros(0, np.float32) for axis in XYZ}
        return fields_to_scan(empty, frame_id=frame_id, stamp_ns=stamp_ns, organized_shape=shape)
    views = field_views(msg, layout, layout.names(), backend)  # 2. view
    return fields_to_scan(  # 3. build
        views, frame_id=frame_id, stamp_ns=stamp_ns, organized_shape=shape, skip_nans=skip_nans
    )


def read_fields(
    msg: Any,
    names: list[str] | tuple[str, ...] | None = None,
    skip_nans: bool = False,
    *,
    backend: Backend = "auto",
) -> dict[str, np.ndarray]:
    """Fields of a PointCloud2 as native numpy arrays: (N,) or (N, count), in field order.

    ``names``: fields to read (default all; an empty name reads as ``unnamed_field_<index>``).
    ``skip_nans``: drop points whose x, y or z is NaN or +-Inf (the cloud must have x, y, z).
    Points of an organised cloud come row-major (index = row * width + column).
    """
    layout = describe_cloud(msg, require_xyz=skip_nans)  # 1. check
    wanted = layout.names() if names is None else list(names)
    missing = [n for n in wanted if layout.field(n) is None]
    if missing:
        raise CloudFormatError(
            f"cloud has no field {', '.join(map(repr, missing))} (fields: {', '.join(layout.names()) or 'none'})"
        )
    check_nans = skip_nans and layout.num_points > 0  # an empty cloud may lack x, y, z
    lookup = list(dict.fromkeys(wanted + (list(XYZ) if check_nans else [])))
    views = field_views(msg, layout, lookup, backend)  # 2. view
    keep = _finite_xyz(views) if check_nans else None  # 3. copy out the wanted fields, finite rows only
    if keep is not None and keep.all():
        keep = None
    return {name: native_copy(views[name] if keep is None else views[name][keep]) for name in wanted}


def _finite_xyz(views: dict[str, np.ndarray]) -> np.ndarray:
    mask = np.isfinite(views["x"])
    mask &= np.isfinite(views["y"])
    mask &= np.isfinite(views["z"])
    return mask


# --- encoding ----------------------------------------------------------------------------------
@dataclass
class _Block:
    """Consecutive PointFields filled from one array (e.g. x, y, z from an (N, 3) array)."""

    fields: list[tuple[str, int, int]]  # (name, datatype, count), laid out back to back
    np_format: Any
    values: np.ndarray


def _build_cloud(
    types: MessageTypes,
    blocks: list[_Block],
    frame_id: str,
    stamp_ns: int,
    height: int,
    width: int,
    is_dense: bool,
) -> Any:
    names, formats, offsets, point_fields = [], [], [], []
    offset = 0
    for index, block in enumerate(blocks):
        names.append(f"block{index}")
        formats.append(block.np_format)
        offsets.append(offset)
        for name, datatype, count in block.fields:
            point_fields.append(types.point_field(name=name, offset=offset, datatype=datatype, count=count))
            offset += 4 * count  # every field written here is 4 bytes wide
    point_step = offset
    records = np.empty(
        height * width, dtype=np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": point_step})
    )
    for name, block in zip(names, blocks):
        records[name] = block.values
    msg = types.point_cloud2(
        header=make_header(types, frame_id, stamp_ns),
        height=height,
        width=width,
        fields=point_fields,
        is_bigendian=False,
        point_step=point_step,
        row_step=point_step * width,
        data=types.wrap_data(np.zeros(0, np.uint8)),
        is_dense=is_dense,
    )
    # Assigned after construction: rclpy's constructor copies ``data`` once more than its setter.
    msg.data = types.wrap_data(records.view(np.uint8))
    return msg


def _rows(name: str, values: Any, n: int, width: int | None, dtype: Any) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim == 0 or len(arr) != n or (width is not None and arr.reshape(n, -1).shape[1] != width):
        shape = f"({n},)" if width is None else f"({n}, {width})"
        raise ValueError(f"{name} must have shape {shape} to match {n} points, got {arr.shape}")
    return arr.astype(dtype, copy=False).reshape((n,) if width is None else (n, width))


def _xyz_block(points: np.ndarray) -> _Block:
    return _Block([(axis, FLOAT32, 1) for axis in XYZ], ("<f4", (3,)), points)


def make_labeled_cloud(
    points: np.ndarray,
    colors: np.ndarray | None,
    label: np.ndarray,
    score: np.ndarray | None,
    frame_id: str = "map",
    stamp_ns: int = 0,
    msg_factory: MessageTypes | None = None,
) -> Any:
    """The segmentation output cloud: x, y, z, rgb, label, score (point_step 24; height 1).

    ``label`` is already packed (``semantic << 16 | instance``, see :func:`pack_label`); ``rgb`` is
    float32-packed 0x00RRGGBB as RViz expects. ``colors=None`` / ``score=None`` leave that field
    out (point_step shrinks by 4 each). ``is_dense`` says whether every coordinate is finite.
    """
    types = msg_factory or default_message_types()
    points = np.asarray(points, dtype=np.float32).reshape(-1, 3)
    n = len(points)
    blocks = [_xyz_block(points)]
    if colors is not None:
        blocks.append(_Block([("rgb", FLOAT32, 1)], "<u4", pack_rgb(_rows("colors", colors, n, 3, np.uint8))))
    label_arr = np.asarray(label)
    if label_arr.size and (label_arr.min() < 0 or label_arr.max() > 0xFFFFFFFF):
        raise ValueError("label must hold packed uint32 values (semantic << 16 | instance)")
    blocks.append(_Block([("label", UINT32, 1)], "<u4", _rows("label", label_arr, n, None, np.uint32)))
    if score is not None:
        blocks.append(_Block([("score", FLOAT32, 1)], "<f4", _rows("score", score, n, None, np.float32)))
    is_dense = bool(np.isfinite(points).all())
    return _build_cloud(types, blocks, frame_id, stamp_ns, 1, n, is_dense)


def _check_16bit(name: str, values: np.ndarray | None) -> None:
    if values is not None and values.size and (values.min() < 0 or values.max() > INSTANCE_MASK):
        raise ValueError(
            f"scan.{name} spans [{values.min()}, {values.max()}] but the packed label field holds "
            f"semantic << 16 | instance with each part in [0, {INSTANCE_MASK}]"
        )


def scan_to_cloud(scan: Scan, msg_factory: MessageTypes | None = None) -> Any:
    """Encode a :class:`Scan` as a PointCloud2 (little-endian, no padding).

    Fields: x, y, z (FLOAT32); rgb (FLOAT32-packed) if colours; normal_x/y/z if normals; label
    (UINT32, semantic << 16 | instance, a missing part written as 0) if labels or instances;
    features (FLOAT32, count D) if features with D > 0. A scan that still has the full grid of an
    organised cloud (``meta["organized_shape"]`` with h*w == len(scan)) is written organised.
    """
    types = msg_factory or default_message_types()
    n = len(scan)
    blocks = [_xyz_block(scan.points)]
    if scan.colors is not None:
        blocks.append(_Block([("rgb", FLOAT32, 1)], "<u4", pack_rgb(scan.colors)))
    if scan.normals is not None:
        blocks.append(_Block([(name, FLOAT32, 1) for name in NORMALS], ("<f4", (3,)), scan.normals))
    if scan.labels is not None or scan.instances is not None:
        _check_16bit("labels", scan.labels)
        _check_16bit("instances", scan.instances)
        zeros = np.zeros(n, dtype=np.int32)
        packed = pack_label(
            zeros if scan.labels is None else scan.labels,
            zeros if scan.instances is None else scan.instances,
        )
        blocks.append(_Block([("label", UINT32, 1)], "<u4", packed))
    if scan.features is not None and scan.features.shape[1] > 0:
        dim = scan.features.shape[1]
        blocks.append(_Block([("features", FLOAT32, dim)], ("<f4", (dim,)), scan.features))
    height, width = 1, n
    shape = scan.meta.get("organized_shape")
    if shape is not None and "valid_index" not in scan.meta and int(shape[0]) * int(shape[1]) == n:
        height, width = int(shape[0]), int(shape[1])
    is_dense = bool(np.isfinite(scan.points).all())
    return _build_cloud(types, blocks, scan.frame_id, scan.stamp_ns, height, width, is_dense)


__all__ = [
    "Backend",
    "CloudFormatError",
    "CloudLayout",
    "FieldLayout",
    "cloud_to_scan",
    "describe_cloud",
    "field_views",
    "make_labeled_cloud",
    "pack_rgb",
    "read_fields",
    "scan_to_cloud",
    "sensor_msgs_py_available",
    "unpack_rgb",
    "validate_cloud",
]
