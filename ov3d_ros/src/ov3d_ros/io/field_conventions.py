"""PCL / ROS point-field names -> :class:`Scan`, shared by PointCloud2 and PCD decoding.

For a PointCloud2 this is the last step, after :mod:`.cloud_layout` (check) and
:mod:`.cloud_views` (view the fields); it takes arrays, not messages.

Conventions (PCL's field names, which PointCloud2 and PCD share):

* ``x``, ``y``, ``z``: any numeric type, returned as float32 points.
* ``rgb`` / ``rgba``: packed ``0x00RRGGBB`` / ``0xAARRGGBB`` stored as FLOAT32 (PCL, RViz) or
  (U)INT32; UINT8 with count 3 or 4; or separate ``r``, ``g``, ``b`` UINT8 fields.
* ``normal_x``, ``normal_y``, ``normal_z``: normals.
* ``label``: integer, ``semantic_id << 16 | instance_id`` (MIT-SPARK semantic_inference / Hydra).
  A plain PCL label below 65536 (PointXYZL, the mOSD clouds) therefore decodes as semantic 0 and
  instance = label.
* ``features``: float with ``count = D``: per-point features (N, D).
* anything else lands in ``scan.meta["extra_fields"][name]``, aligned with the points.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from .scan import Scan, unpack_label

XYZ = ("x", "y", "z")
NORMALS = ("normal_x", "normal_y", "normal_z")


def unpack_rgb(values: np.ndarray) -> np.ndarray:
    """Packed 0x(AA)RRGGBB colours (uint32, or float32 carrying those bits) -> (N, 3) uint8 RGB."""
    bits = values.view(np.dtype(np.uint32).newbyteorder(values.dtype.byteorder))
    little = np.ascontiguousarray(bits, dtype="<u4")  # bytes B, G, R, A in memory
    return little.view(np.uint8).reshape(-1, 4)[:, 2::-1].copy()


def pack_rgb(colors: np.ndarray) -> np.ndarray:
    """(N, 3) uint8 RGB -> (N,) uint32 ``0x00RRGGBB``.

    Alpha is left 0 so the bits read as float32 are never NaN: RViz ignores alpha in the ``rgb``
    field, and NaN-filtering consumers (sensor_msgs_py ``skip_nans``) would otherwise drop points.
    """
    colors = np.asarray(colors, dtype=np.uint8).reshape(-1, 3)
    out = np.zeros((len(colors), 4), dtype=np.uint8)
    out[:, 2::-1] = colors  # little-endian uint32: byte 0 = B, 1 = G, 2 = R
    return out.view("<u4").reshape(-1)


def _describe(name: str, values: np.ndarray) -> str:
    count = 1 if values.ndim == 1 else values.shape[1]
    return f"'{name}' ({values.dtype.newbyteorder('=').name} x{count})"


def _colors(columns: dict[str, np.ndarray], consumed: set[str]) -> np.ndarray | None:
    for name in ("rgb", "rgba"):
        values = columns.get(name)
        if values is None:
            continue
        if values.ndim == 1 and values.dtype.itemsize == 4 and values.dtype.kind in "fiu":
            consumed.add(name)
            return unpack_rgb(values)
        if values.ndim == 2 and values.dtype.kind == "u" and values.dtype.itemsize == 1 and values.shape[1] in (3, 4):
            consumed.add(name)
            return np.ascontiguousarray(values[:, :3])
        warnings.warn(
            f"field {_describe(name, values)} is not a packed colour (FLOAT32/UINT32 0x(AA)RRGGBB or"
            " UINT8 x3/x4); it is kept in meta['extra_fields']",
            stacklevel=3,
        )
    channels = [columns.get(c) for c in "rgb"]
    if all(v is not None and v.ndim == 1 and v.dtype == np.uint8 for v in channels):
        consumed.update("rgb")
        return np.stack([v for v in channels if v is not None], axis=1)  # all present: checked above
    return None


def _scalar(columns: dict[str, np.ndarray], name: str) -> np.ndarray | None:
    values = columns.get(name)
    return values if values is not None and values.ndim == 1 else None


def finite_rows(points: np.ndarray) -> np.ndarray:
    """(N, 3) -> (N,) bool: all three coordinates finite (column by column: cheaper than all(axis=1) on a strided view)."""
    finite = np.isfinite(points)
    return finite[:, 0] & finite[:, 1] & finite[:, 2]


def native_copy(values: np.ndarray, dtype: Any = None) -> np.ndarray:
    """An owned, contiguous, native-byte-order copy."""
    target = values.dtype.newbyteorder("=") if dtype is None else np.dtype(dtype)
    return np.array(values, dtype=target, order="C", copy=True)


def fields_to_scan(
    columns: dict[str, np.ndarray],
    *,
    frame_id: str = "map",
    stamp_ns: int = 0,
    organized_shape: tuple[int, int] | None = None,
    skip_nans: bool = True,
    meta: dict[str, Any] | None = None,
) -> Scan:
    """Build a :class:`Scan` from per-field arrays ((N,) or (N, count), any byte order).

    ``columns`` must hold x, y and z. ``skip_nans`` drops points whose x, y or z is not finite and
    records ``meta["valid_index"]`` (index of each kept point in the input order, row-major for
    organised clouds) so per-pixel data stays aligned. ``organized_shape`` (height, width) is kept
    in ``meta["organized_shape"]`` when height > 1.
    """
    meta = dict(meta or {})
    if organized_shape is not None and organized_shape[0] > 1:
        meta["organized_shape"] = (int(organized_shape[0]), int(organized_shape[1]))
    n = len(columns["x"])
    points = np.empty((n, 3), dtype=np.float32)
    for axis, name in enumerate(XYZ):
        points[:, axis] = columns[name]

    keep: np.ndarray | None = None
    if skip_nans and n:
        finite = finite_rows(points)
        if not finite.all():
            keep = finite
            meta["valid_index"] = np.flatnonzero(finite)
            points = points[finite]
    take: Callable[[np.ndarray], np.ndarray] = (lambda a: a) if keep is None else (lambda a: a[keep])

    consumed = set(XYZ)
    colors = _colors(columns, consumed)

    normals = None
    normal_columns = [_scalar(columns, name) for name in NORMALS]
    if all(c is not None for c in normal_columns):
        normals = np.empty((n, 3), dtype=np.float32)
        for axis, values in enumerate(normal_columns):
            normals[:, axis] = values
        consumed.update(NORMALS)

    labels = instances = None
    label = columns.get("label")
    if label is not None:
        if label.ndim == 1 and label.dtype.kind in "iu":
            labels, instances = unpack_label(label.astype(np.uint32))
            consumed.add("label")
        else:
            warnings.warn(
                f"field {_describe('label', label)} is not an integer label; it is kept in meta['extra_fields']",
                stacklevel=2,
            )

    features = None
    if "features" in columns:
        values = columns["features"]
        features = values.astype(np.float32).reshape(n, 1 if values.ndim == 1 else values.shape[1])
        consumed.add("features")

    extras = {name: native_copy(take(values)) for name, values in columns.items() if name not in consumed}
    if extras:
        meta["extra_fields"] = extras
    return Scan(
        points=points,
        colors=None if colors is None else take(colors),
        normals=None if normals is None else take(normals),
        labels=None if labels is None else take(labels),
        instances=None if instances is None else take(instances),
        features=None if features is None else take(features),
        frame_id=frame_id,
        stamp_ns=stamp_ns,
        meta=meta,
    )
