"""View the fields of a checked PointCloud2 as numpy arrays: the middle step of decoding.

Input: the message and the :class:`~.cloud_layout.CloudLayout` that :func:`~.cloud_layout.describe_cloud`
returned for it (its bytes included), so nothing here re-reads or re-checks the message's header.
Output: per-field arrays (N,) or (N, count), possibly in the message's (non-native) byte order; the
caller turns them into a Scan or copies them out.

Two backends give identical arrays (``test/io/test_pointcloud2_backends.py``):

* numpy (always): one structured dtype per field over the bytes (``itemsize = point_step``, so
  padding is skipped; ``'>'`` for big-endian; ``count > 1`` as a sub-array). A view, not a copy:
  no Python loop over points, and rows with trailing padding cost one copy.
* ``sensor_msgs_py.point_cloud2.read_points`` where a system ROS 2 provides it and it can read the
  message safely (an rclpy message, little-endian, no row padding, no colliding sub-field names).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Literal

import numpy as np

from .cloud_layout import CloudLayout
from .errors import CloudFormatError

Backend = Literal["auto", "numpy", "sensor_msgs_py"]


@lru_cache(maxsize=1)
def _sensor_msgs_py() -> Any | None:
    try:
        from sensor_msgs_py import point_cloud2
    except ImportError:
        return None
    return point_cloud2


def sensor_msgs_py_available() -> bool:
    return _sensor_msgs_py() is not None


def field_views(msg: Any, layout: CloudLayout, names: list[str], backend: Backend = "auto") -> dict[str, np.ndarray]:
    """Per-field arrays (N,) or (N, count) of a checked message, possibly non-native byte order.

    ``backend``: ``"numpy"`` (always available), ``"sensor_msgs_py"`` (raises CloudFormatError
    where it cannot be used, saying why) or ``"auto"`` (sensor_msgs_py where it can, else numpy).
    """
    if backend not in ("auto", "numpy", "sensor_msgs_py"):
        raise ValueError(f"backend must be 'auto', 'numpy' or 'sensor_msgs_py', got {backend!r}")
    if backend != "numpy" and layout.num_points > 0:
        refusal = _sensor_msgs_py_refusal(msg, layout)
        if refusal is None:
            return _sensor_msgs_py_field_views(msg, layout, names)
        if backend == "sensor_msgs_py":
            raise CloudFormatError(f"cannot use backend 'sensor_msgs_py': {refusal}")
    return _numpy_field_views(layout, names)


def _numpy_field_views(layout: CloudLayout, names: list[str]) -> dict[str, np.ndarray]:
    """Strided views of ``names`` over the message bytes, in the message's byte order."""
    n = layout.num_points
    buf = layout.data
    if layout.has_row_padding:
        # Rows carry trailing bytes: keep the first width*point_step bytes of each (one copy).
        usable = layout.width * layout.point_step
        buf = np.ascontiguousarray(buf.reshape(layout.height, layout.row_step)[:, :usable]).reshape(-1)
    views: dict[str, np.ndarray] = {}
    for name in names:
        f = layout.field(name)
        assert f is not None
        fmt = layout.byte_order + f.type_code
        if n == 0:
            shape = (0,) if f.count == 1 else (0, f.count)
            views[name] = np.empty(shape, dtype=fmt)
            continue
        # One single-field dtype per field: overlapping fields (unions) stay legal.
        dtype = np.dtype(
            {
                "names": [name],
                "formats": [fmt if f.count == 1 else (fmt, (f.count,))],
                "offsets": [f.offset],
                "itemsize": layout.point_step,
            }
        )
        views[name] = np.frombuffer(buf, dtype=dtype, count=n)[name]
    return views


def _sensor_msgs_py_refusal(msg: Any, layout: CloudLayout) -> str | None:
    """Why sensor_msgs_py must not read ``msg`` (None if it may)."""
    module = _sensor_msgs_py()
    if module is None:
        return "sensor_msgs_py is not importable"
    if not isinstance(msg, module.PointCloud2):
        return f"sensor_msgs_py only reads sensor_msgs.msg.PointCloud2, not {type(msg).__name__}"
    if layout.is_bigendian:
        return "sensor_msgs_py byte-swaps big-endian data in place (it would modify the message)"
    if layout.has_row_padding:
        return "sensor_msgs_py ignores row_step, so rows with padding would be misread"
    expanded = [f"{f.name}_{i}" if f.count > 1 else f.name for f in layout.fields for i in range(f.count)]
    if len(set(expanded)) != len(expanded):
        return "sensor_msgs_py's names for count>1 sub-fields collide with other field names"
    return None


def _sensor_msgs_py_field_views(msg: Any, layout: CloudLayout, names: list[str]) -> dict[str, np.ndarray]:
    module = _sensor_msgs_py()
    assert module is not None  # this backend is chosen only when sensor_msgs_py imports
    points = module.read_points(msg, skip_nans=False)
    views: dict[str, np.ndarray] = {}
    for name in names:
        f = layout.field(name)
        assert f is not None
        if f.count == 1:
            views[name] = points[name]
        else:  # sensor_msgs_py splits count>1 fields into name_0 .. name_{count-1}
            views[name] = np.stack([points[f"{name}_{i}"] for i in range(f.count)], axis=-1)
    return views
