"""Test-side PointCloud2 builder and reader written with ``struct``, independent of the numpy code
under test (tiny clouds only: they loop over points)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from ov3d_ros.io.messages import MessageTypes, make_header, plain_message_types

STRUCT_CODES = {1: "b", 2: "B", 3: "h", 4: "H", 5: "i", 6: "I", 7: "f", 8: "d"}
NUMPY_CODES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 8: "f8"}
SIZES = {code: struct.calcsize("<" + c) for code, c in STRUCT_CODES.items()}


@dataclass
class FieldSpec:
    name: str
    offset: int
    datatype: int
    count: int = 1


def random_values(rng: np.random.Generator, spec: FieldSpec, n: int) -> np.ndarray:
    code = NUMPY_CODES[spec.datatype]
    shape = (n,) if spec.count == 1 else (n, spec.count)
    if code[0] == "f":
        return rng.normal(scale=100.0, size=shape).astype(code)
    info = np.iinfo(code)
    return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=code)


def pack_cloud(
    specs: list[FieldSpec],
    values: dict[str, np.ndarray],
    *,
    height: int,
    width: int,
    point_step: int,
    row_step: int | None = None,
    big_endian: bool = False,
    types: MessageTypes | None = None,
    frame_id: str = "cam",
    stamp_ns: int = 0,
    pad_byte: int = 0xAB,
):
    """A PointCloud2 whose bytes are written value by value with struct (padding = ``pad_byte``)."""
    types = types or plain_message_types()
    row_step = width * point_step if row_step is None else row_step
    data = bytearray([pad_byte]) * (height * row_step)
    prefix = ">" if big_endian else "<"
    for spec in specs:
        column = np.asarray(values[spec.name]).reshape(height * width, spec.count)
        fmt = prefix + STRUCT_CODES[spec.datatype] * spec.count
        for index, row in enumerate(column.tolist()):
            r, c = divmod(index, width)
            struct.pack_into(fmt, data, r * row_step + c * point_step + spec.offset, *row)
    fields = [types.point_field(name=s.name, offset=s.offset, datatype=s.datatype, count=s.count) for s in specs]
    return types.point_cloud2(
        header=make_header(types, frame_id, stamp_ns),
        height=height,
        width=width,
        fields=fields,
        is_bigendian=big_endian,
        point_step=point_step,
        row_step=row_step,
        data=types.wrap_data(np.frombuffer(bytes(data), dtype=np.uint8)),
        is_dense=False,
    )


def reference_read(msg) -> dict[str, np.ndarray]:
    """Every field of ``msg`` read point by point with struct.unpack_from."""
    data = bytes(np.frombuffer(msg.data, dtype=np.uint8)) if not isinstance(msg.data, bytes) else msg.data
    prefix = ">" if msg.is_bigendian else "<"
    out = {}
    for field in msg.fields:
        fmt = prefix + STRUCT_CODES[field.datatype] * field.count
        rows = [
            struct.unpack_from(fmt, data, r * msg.row_step + c * msg.point_step + field.offset)
            for r in range(msg.height)
            for c in range(msg.width)
        ]
        array = np.array(rows, dtype=NUMPY_CODES[field.datatype]).reshape(len(rows), field.count)
        out[field.name] = array[:, 0] if field.count == 1 else array
    return out
