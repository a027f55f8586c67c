"""PCD v0.7 files (PCL): ascii, binary and binary_compressed, read and write.

Reading maps fields through :func:`ov3d_ros.io.field_conventions.fields_to_scan` (PCL names, as
in PointCloud2): the mOSD clouds' ``label`` (0 = no point, 1-9 table, >= 10 objects) becomes
``scan.instances`` with semantic 0, ``rgba`` becomes colours. Organised files keep
``meta["organized_shape"] = (HEIGHT, WIDTH)``; with ``skip_nans`` the kept points' row-major
indices are in ``meta["valid_index"]``.

``binary_compressed`` stores the fields column by column (all x, then all y, ...) inside one
LZF block preceded by two little-endian uint32: compressed and uncompressed size.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import Literal

import numpy as np

from . import lzf
from .cloud_layout import DATATYPES
from .errors import CloudFormatError
from .field_conventions import fields_to_scan
from .messages import plain_message_types
from .pointcloud2 import scan_to_cloud
from .scan import Scan

PcdData = Literal["ascii", "binary", "binary_compressed"]
_PCD_TYPES = {
    ("I", 1): "i1",
    ("I", 2): "i2",
    ("I", 4): "i4",
    ("I", 8): "i8",
    ("U", 1): "u1",
    ("U", 2): "u2",
    ("U", 4): "u4",
    ("U", 8): "u8",
    ("F", 4): "f4",
    ("F", 8): "f8",
}
_PCD_PADDING = "_"  # PCL names padding fields "_"
_MAX_HEADER_LINES = 64


@dataclass(frozen=True)
class PcdField:
    name: str
    type_code: str  # numpy code without byte order, e.g. "f4"
    count: int

    @property
    def nbytes(self) -> int:
        return int(self.type_code[1:]) * self.count


@dataclass(frozen=True)
class PcdHeader:
    fields: tuple[PcdField, ...]
    width: int
    height: int
    points: int
    viewpoint: tuple[float, ...]
    data: str
    data_offset: int  # byte offset of the body in the file

    @property
    def point_size(self) -> int:
        return sum(f.nbytes for f in self.fields)


def _ints(values: list[str], key: str, path: Path) -> list[int]:
    try:
        return [int(v) for v in values]
    except ValueError:
        raise CloudFormatError(f"{path}: {key} must list integers, got {' '.join(values)!r}") from None


def parse_header(raw: bytes, path: Path) -> PcdHeader:
    entries: dict[str, list[str]] = {}
    offset = 0
    for _ in range(_MAX_HEADER_LINES):
        newline = raw.find(b"\n", offset)
        if newline < 0:
            raise CloudFormatError(f"{path}: PCD header ends before its DATA line")
        line = raw[offset:newline].decode("ascii", errors="replace").strip()
        offset = newline + 1
        if not line or line.startswith("#"):
            continue
        key, *values = line.split()
        entries[key.upper()] = values
        if key.upper() == "DATA":
            break
    else:
        raise CloudFormatError(f"{path}: no DATA line in the first {_MAX_HEADER_LINES} header lines")

    names = entries.get("FIELDS") or entries.get("COLUMNS")
    if not names:
        raise CloudFormatError(f"{path}: PCD header has no FIELDS line")
    sizes = _ints(entries.get("SIZE", []), "SIZE", path)
    types = [t.upper() for t in entries.get("TYPE", [])]
    counts = _ints(entries.get("COUNT", ["1"] * len(names)), "COUNT", path)
    if not (len(sizes) == len(types) == len(counts) == len(names)):
        raise CloudFormatError(
            f"{path}: FIELDS has {len(names)} entries but SIZE {len(sizes)}, TYPE {len(types)}, COUNT {len(counts)}"
        )
    fields = []
    for name, size, type_, count in zip(names, sizes, types, counts):
        code = _PCD_TYPES.get((type_, size))
        if code is None:
            raise CloudFormatError(
                f"{path}: field '{name}' has TYPE {type_} SIZE {size}; PCD allows I/U 1,2,4,8 and F 4,8"
            )
        if count < 1:
            raise CloudFormatError(f"{path}: field '{name}' has COUNT {count}; must be >= 1")
        fields.append(PcdField(name, code, count))
    named = [f.name for f in fields if f.name != _PCD_PADDING]
    duplicates = sorted({n for n in named if named.count(n) > 1})
    if duplicates:
        raise CloudFormatError(f"{path}: FIELDS names {', '.join(duplicates)} more than once")
    width = _ints(entries.get("WIDTH", ["-1"]), "WIDTH", path)[0]
    height = _ints(entries.get("HEIGHT", ["1"]), "HEIGHT", path)[0]
    if width < 0 or height < 0:
        raise CloudFormatError(f"{path}: WIDTH and HEIGHT must be given and >= 0 (got {width}, {height})")
    points = _ints(entries.get("POINTS", [str(width * height)]), "POINTS", path)[0]
    if points != width * height:
        raise CloudFormatError(f"{path}: POINTS {points} != WIDTH*HEIGHT = {width}*{height} = {width * height}")
    try:
        viewpoint = tuple(float(v) for v in entries.get("VIEWPOINT", ["0", "0", "0", "1", "0", "0", "0"]))
    except ValueError:
        raise CloudFormatError(f"{path}: VIEWPOINT must hold 7 numbers") from None
    data = entries["DATA"][0].lower() if entries["DATA"] else ""
    if data not in ("ascii", "binary", "binary_compressed"):
        raise CloudFormatError(f"{path}: DATA {data!r} is not ascii, binary or binary_compressed")
    return PcdHeader(tuple(fields), width, height, points, viewpoint, data, offset)


def _columns_from_records(records: np.ndarray, fields: tuple[PcdField, ...]) -> dict[str, np.ndarray]:
    return {f.name: records[f.name] for f in fields if f.name != _PCD_PADDING}


def _record_dtype(fields: tuple[PcdField, ...]) -> np.dtype:
    names, formats, offsets, offset = [], [], [], 0
    for index, f in enumerate(fields):
        names.append(f.name if f.name != _PCD_PADDING else f"{_PCD_PADDING}{index}")
        formats.append("<" + f.type_code if f.count == 1 else ("<" + f.type_code, (f.count,)))
        offsets.append(offset)
        offset += f.nbytes
    return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": offset})


def _read_ascii(body: bytes, header: PcdHeader, path: Path) -> dict[str, np.ndarray]:
    per_point = sum(f.count for f in header.fields)
    try:
        values = np.array(body.split(), dtype=np.float64)
    except ValueError as exc:
        raise CloudFormatError(f"{path}: ascii PCD body holds a non-number: {exc}") from None
    if values.size < header.points * per_point:
        raise CloudFormatError(
            f"{path}: ascii body has {values.size} values but {header.points} points x {per_point} = "
            f"{header.points * per_point} were expected"
        )
    table = values[: header.points * per_point].reshape(header.points, per_point)
    columns, col = {}, 0
    for f in header.fields:
        block = table[:, col : col + f.count]
        col += f.count
        if f.name == _PCD_PADDING:
            continue
        if f.type_code[0] in "iu":
            block = np.nan_to_num(block)  # PCL writes integers as integers; guard against "nan"
        columns[f.name] = (block[:, 0] if f.count == 1 else block).astype(f.type_code)
    return columns


def _read_binary(body: bytes, header: PcdHeader, path: Path) -> dict[str, np.ndarray]:
    need = header.points * header.point_size
    if len(body) < need:
        raise CloudFormatError(
            f"{path}: binary body has {len(body)} bytes but {header.points} points x "
            f"{header.point_size} bytes = {need} were expected (truncated file?)"
        )
    records = np.frombuffer(body, dtype=_record_dtype(header.fields), count=header.points)
    return _columns_from_records(records, header.fields)


def _read_binary_compressed(body: bytes, header: PcdHeader, path: Path) -> dict[str, np.ndarray]:
    if len(body) < 8:
        raise CloudFormatError(f"{path}: binary_compressed body is shorter than its 8-byte size prefix")
    compressed_size, raw_size = struct.unpack("<II", body[:8])
    if 8 + compressed_size > len(body):
        raise CloudFormatError(
            f"{path}: binary_compressed block says {compressed_size} bytes but only {len(body) - 8} follow"
        )
    # PCL leaves "_" padding fields out of the compressed columns; accept both spellings.
    real_fields = tuple(f for f in header.fields if f.name != _PCD_PADDING)
    candidates = [header.fields, real_fields]
    layout = next((c for c in candidates if header.points * sum(f.nbytes for f in c) == raw_size), None)
    if layout is None:
        raise CloudFormatError(
            f"{path}: binary_compressed block uncompresses to {raw_size} bytes but {header.points} points x "
            f"{header.point_size} bytes = {header.points * header.point_size} were expected"
        )
    raw = lzf.decompress(memoryview(body)[8 : 8 + compressed_size], raw_size)
    columns, offset = {}, 0
    for f in layout:
        size = header.points * f.nbytes
        if f.name != _PCD_PADDING:
            values = np.frombuffer(raw, dtype="<" + f.type_code, count=header.points * f.count, offset=offset)
            columns[f.name] = values if f.count == 1 else values.reshape(header.points, f.count)
        offset += size
    return columns


def read_pcd(path: str | Path, *, skip_nans: bool = True, frame_id: str = "map") -> Scan:
    path = Path(path)
    raw = path.read_bytes()
    header = parse_header(raw, path)
    body = raw[header.data_offset :]
    reader = {"ascii": _read_ascii, "binary": _read_binary, "binary_compressed": _read_binary_compressed}
    columns = reader[header.data](body, header, path)
    missing = [axis for axis in "xyz" if axis not in columns]
    if missing:
        raise CloudFormatError(f"{path}: PCD has no field {', '.join(missing)} (fields: {' '.join(columns)})")
    return fields_to_scan(
        columns,
        frame_id=frame_id,
        organized_shape=(header.height, header.width),
        skip_nans=skip_nans,
        meta={"source": str(path), "viewpoint": header.viewpoint, "pcd_data": header.data},
    )


# --- writing -----------------------------------------------------------------------------------
def _ascii_body(records: np.ndarray, fields: list[tuple[str, str, int]]) -> bytes:
    columns = []
    formats = []
    for name, code, count in fields:
        values = records[name].reshape(len(records), count)
        columns.append(values.astype(np.float64))
        fmt = "%.9g" if code[0] == "f" else "%d"
        formats.extend([fmt] * count)
    table = np.hstack(columns) if columns else np.zeros((len(records), 0))
    buffer = StringIO()
    np.savetxt(buffer, table, fmt=formats, delimiter=" ")
    return buffer.getvalue().encode("ascii")


def write_pcd(scan: Scan, path: str | Path, *, data: PcdData = "binary") -> None:
    """Write ``scan`` as PCD v0.7 with the field layout of :func:`scan_to_cloud`.

    ``data="binary_compressed"`` writes literal-only LZF (see :func:`lzf.compress_literal`).
    An organised scan with its full grid (``meta["organized_shape"]``) is written organised.
    """
    if data not in ("ascii", "binary", "binary_compressed"):
        raise ValueError(f"data must be 'ascii', 'binary' or 'binary_compressed', got {data!r}")
    cloud = scan_to_cloud(scan, plain_message_types())
    fields = [(f.name, DATATYPES[f.datatype][1], f.count) for f in cloud.fields]
    dtype = np.dtype(
        {
            "names": [name for name, _, _ in fields],
            "formats": ["<" + c if n == 1 else ("<" + c, (n,)) for _, c, n in fields],
            "offsets": [f.offset for f in cloud.fields],
            "itemsize": cloud.point_step,
        }
    )
    records = np.frombuffer(cloud.data, dtype=dtype, count=cloud.width * cloud.height)
    lines = [
        "# .PCD v0.7 - Point Cloud Data file format (written by ov3d_ros)",
        "VERSION 0.7",
        "FIELDS " + " ".join(name for name, _, _ in fields),
        "SIZE " + " ".join(code[1:] for _, code, _ in fields),
        "TYPE " + " ".join({"i": "I", "u": "U", "f": "F"}[code[0]] for _, code, _ in fields),
        "COUNT " + " ".join(str(count) for _, _, count in fields),
        f"WIDTH {cloud.width}",
        f"HEIGHT {cloud.height}",
        "VIEWPOINT " + " ".join(f"{v:g}" for v in scan.meta.get("viewpoint", (0, 0, 0, 1, 0, 0, 0))),
        f"POINTS {cloud.width * cloud.height}",
        f"DATA {data}",
    ]
    if data == "ascii":
        body = _ascii_body(records, fields)
    elif data == "binary":
        body = bytes(cloud.data)
    else:  # column-major, then LZF
        columns = b"".join(np.ascontiguousarray(records[name]).tobytes() for name, _, _ in fields)
        packed = lzf.compress_literal(columns)
        body = struct.pack("<II", len(packed), len(columns)) + packed
    Path(path).write_bytes(("\n".join(lines) + "\n").encode("ascii") + body)
