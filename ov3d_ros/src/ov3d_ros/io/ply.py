"""PLY files: ascii, binary_little_endian and binary_big_endian; the ``vertex`` element only.

Vertex properties understood (others go to ``scan.meta["extra_fields"]``):

* ``x y z``; colours ``red green blue`` (or ``r g b``, ``diffuse_red ...``), uchar or float in [0, 1];
* normals ``nx ny nz`` (or ``normal_x ...``);
* semantic ``label`` (ScanNet's ``*.labels.ply`` convention; also ``semantic``, ``class``) and
  ``instance`` (or ``instance_id``, ``inst``, ``object_id``);
* ``feature_0 .. feature_{D-1}`` -> features (N, D).

Meshes load their vertices: elements after ``vertex`` (faces) are not read. An element with list
properties *before* ``vertex`` cannot be skipped without parsing it row by row and is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import Literal

import numpy as np

from .errors import CloudFormatError
from .field_conventions import finite_rows, native_copy
from .scan import Scan

PlyFormat = Literal["ascii", "binary_little_endian", "binary_big_endian"]

_PLY_TYPES = {
    "char": "i1",
    "int8": "i1",
    "uchar": "u1",
    "uint8": "u1",
    "short": "i2",
    "int16": "i2",
    "ushort": "u2",
    "uint16": "u2",
    "int": "i4",
    "int32": "i4",
    "uint": "u4",
    "uint32": "u4",
    "float": "f4",
    "float32": "f4",
    "double": "f8",
    "float64": "f8",
}
_COLOR_NAMES = (("red", "green", "blue"), ("r", "g", "b"), ("diffuse_red", "diffuse_green", "diffuse_blue"))
_NORMAL_NAMES = (("nx", "ny", "nz"), ("normal_x", "normal_y", "normal_z"))
_LABEL_NAMES = ("label", "semantic", "semantic_label", "class")
_INSTANCE_NAMES = ("instance", "instance_id", "inst", "object_id")
_MAX_HEADER_BYTES = 1 << 20


@dataclass(frozen=True)
class PlyProperty:
    name: str
    type_code: str  # numpy code without byte order; for lists the item type
    list_count_code: str | None = None  # set for "property list <count> <item> name"


@dataclass(frozen=True)
class PlyElement:
    name: str
    count: int
    properties: tuple[PlyProperty, ...]

    @property
    def has_lists(self) -> bool:
        return any(p.list_count_code for p in self.properties)

    @property
    def row_size(self) -> int:
        return sum(int(p.type_code[1:]) for p in self.properties)


def _type(name: str, path: Path) -> str:
    code = _PLY_TYPES.get(name)
    if code is None:
        raise CloudFormatError(f"{path}: unknown PLY property type {name!r}")
    return code


def parse_header(raw: bytes, path: Path) -> tuple[str, list[PlyElement], int]:
    """(format, elements, byte offset of the body)."""
    if not raw.startswith(b"ply"):
        raise CloudFormatError(f"{path}: not a PLY file (does not start with 'ply')")
    end = raw.find(b"end_header", 0, _MAX_HEADER_BYTES)
    if end < 0:
        raise CloudFormatError(f"{path}: PLY header has no end_header line")
    newline = raw.find(b"\n", end)
    body_offset = len(raw) if newline < 0 else newline + 1
    fmt = ""
    elements: list[tuple[str, int, list[PlyProperty]]] = []
    for line in raw[:end].decode("ascii", errors="replace").splitlines()[1:]:
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        try:
            if words[0] == "format":
                fmt = words[1]
            elif words[0] == "element":
                elements.append((words[1], int(words[2]), []))
            elif words[0] == "property":
                if not elements:
                    raise CloudFormatError(f"{path}: PLY property before any element")
                if words[1] == "list":
                    prop = PlyProperty(words[4], _type(words[3], path), _type(words[2], path))
                else:
                    prop = PlyProperty(words[2], _type(words[1], path))
                elements[-1][2].append(prop)
        except (IndexError, ValueError):
            raise CloudFormatError(f"{path}: malformed PLY header line {line!r}") from None
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise CloudFormatError(f"{path}: PLY format {fmt!r} is not ascii or binary_little/big_endian")
    parsed = [PlyElement(name, count, tuple(props)) for name, count, props in elements]
    for element in parsed:
        if element.count < 0:
            raise CloudFormatError(f"{path}: element '{element.name}' has count {element.count}")
        names = [p.name for p in element.properties]
        if len(set(names)) != len(names):
            raise CloudFormatError(f"{path}: element '{element.name}' names a property twice ({' '.join(names)})")
    return fmt, parsed, body_offset


def _vertex_arrays(raw: bytes, fmt: str, elements: list[PlyElement], offset: int, path: Path) -> dict[str, np.ndarray]:
    index = next((i for i, e in enumerate(elements) if e.name == "vertex"), None)
    if index is None:
        raise CloudFormatError(f"{path}: PLY has no 'vertex' element")
    vertex = elements[index]
    if vertex.has_lists:
        raise CloudFormatError(f"{path}: PLY vertex element has list properties; not supported")
    before = elements[:index]
    if any(e.has_lists for e in before):
        raise CloudFormatError(f"{path}: PLY has a list element before 'vertex'; not supported")

    if fmt == "ascii":
        skip = sum(e.count for e in before)
        lines = raw[offset:].split(b"\n", skip + vertex.count)
        rows = lines[skip : skip + vertex.count]
        width = len(vertex.properties)
        try:
            values = np.array(b" ".join(rows).split(), dtype=np.float64)
        except ValueError as exc:
            raise CloudFormatError(f"{path}: ascii PLY vertex holds a non-number: {exc}") from None
        if len(rows) < vertex.count or values.size != vertex.count * width:
            raise CloudFormatError(
                f"{path}: expected {vertex.count} vertex rows of {width} values, found {values.size} values"
            )
        table = values.reshape(vertex.count, width)
        return {p.name: table[:, i].astype(p.type_code) for i, p in enumerate(vertex.properties)}

    order = "<" if fmt == "binary_little_endian" else ">"
    start = offset + sum(e.count * e.row_size for e in before)
    need = vertex.count * vertex.row_size
    if len(raw) - start < need:
        raise CloudFormatError(
            f"{path}: PLY vertex data needs {need} bytes ({vertex.count} x {vertex.row_size}) but "
            f"{max(len(raw) - start, 0)} remain (truncated file?)"
        )
    dtype = np.dtype([(p.name, order + p.type_code) for p in vertex.properties])
    records = np.frombuffer(raw, dtype=dtype, count=vertex.count, offset=start)
    return {p.name: records[p.name] for p in vertex.properties}


def _first(columns: dict[str, np.ndarray], options: tuple[tuple[str, ...], ...]) -> tuple[str, ...] | None:
    return next((names for names in options if all(n in columns for n in names)), None)


def _colors(values: list[np.ndarray]) -> np.ndarray:
    stacked = np.stack(values, axis=1)
    if stacked.dtype.kind == "f":
        scale = 255.0 if stacked.size and np.nanmax(stacked) <= 1.0 else 1.0
        stacked = np.rint(np.nan_to_num(stacked) * scale)
    return np.clip(stacked, 0, 255).astype(np.uint8)


def read_ply(path: str | Path, *, skip_nans: bool = True, frame_id: str = "map") -> Scan:
    path = Path(path)
    raw = path.read_bytes()
    fmt, elements, offset = parse_header(raw, path)
    columns = _vertex_arrays(raw, fmt, elements, offset, path)
    missing = [axis for axis in "xyz" if axis not in columns]
    if missing:
        raise CloudFormatError(f"{path}: PLY vertex has no {', '.join(missing)} (properties: {' '.join(columns)})")
    used = {"x", "y", "z"}
    points = np.stack([columns[a] for a in "xyz"], axis=1).astype(np.float32)

    colors = normals = labels = instances = features = None
    names = _first(columns, _COLOR_NAMES)
    if names:
        colors = _colors([columns[n] for n in names])
        used.update(names)
    names = _first(columns, _NORMAL_NAMES)
    if names:
        normals = np.stack([columns[n] for n in names], axis=1).astype(np.float32)
        used.update(names)
    label_name = next((n for n in _LABEL_NAMES if n in columns), None)
    if label_name:
        labels = columns[label_name].astype(np.int32)
        used.add(label_name)
    instance_name = next((n for n in _INSTANCE_NAMES if n in columns), None)
    if instance_name:
        instances = columns[instance_name].astype(np.int32)
        used.add(instance_name)
    dim = 0
    while f"feature_{dim}" in columns:
        dim += 1
    if dim:
        feature_names = [f"feature_{i}" for i in range(dim)]
        features = np.stack([columns[n] for n in feature_names], axis=1).astype(np.float32)
        used.update(feature_names)

    meta: dict = {"source": str(path), "ply_format": fmt}
    extras = {name: native_copy(values) for name, values in columns.items() if name not in used}
    if extras:
        meta["extra_fields"] = extras
    scan = Scan(points, colors, normals, labels, instances, features, frame_id=frame_id, meta=meta)
    if skip_nans and len(scan):
        finite = finite_rows(scan.points)
        if not finite.all():
            kept = scan.subset(finite)
            kept.meta["valid_index"] = np.flatnonzero(finite)
            if extras:
                kept.meta["extra_fields"] = {k: v[finite] for k, v in extras.items()}
            return kept
    return scan


def write_ply(scan: Scan, path: str | Path, *, fmt: PlyFormat = "binary_little_endian") -> None:
    """Write the scan's points and per-point attributes as a PLY vertex element."""
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise ValueError(f"fmt must be ascii, binary_little_endian or binary_big_endian, got {fmt!r}")
    order = ">" if fmt == "binary_big_endian" else "<"
    props: list[tuple[str, str, np.ndarray]] = [
        ("x", "float", scan.points[:, 0]),
        ("y", "float", scan.points[:, 1]),
        ("z", "float", scan.points[:, 2]),
    ]
    if scan.colors is not None:
        props += [(c, "uchar", scan.colors[:, i]) for i, c in enumerate(("red", "green", "blue"))]
    if scan.normals is not None:
        props += [(c, "float", scan.normals[:, i]) for i, c in enumerate(("nx", "ny", "nz"))]
    if scan.labels is not None:
        props.append(("label", "int", scan.labels))
    if scan.instances is not None:
        props.append(("instance", "int", scan.instances))
    if scan.features is not None:
        props += [(f"feature_{i}", "float", scan.features[:, i]) for i in range(scan.features.shape[1])]

    header = ["ply", f"format {fmt} 1.0", "comment written by ov3d_ros", f"element vertex {len(scan)}"]
    header += [f"property {ply_type} {name}" for name, ply_type, _ in props]
    header.append("end_header")
    dtype = np.dtype([(name, order + _PLY_TYPES[ply_type]) for name, ply_type, _ in props])
    records = np.empty(len(scan), dtype=dtype)
    for name, _, values in props:
        records[name] = values
    if fmt == "ascii":
        buffer = StringIO()
        formats = ["%.9g" if t == "float" else "%d" for _, t, _ in props]
        table = np.stack([records[name].astype(np.float64) for name, _, _ in props], axis=1)
        np.savetxt(buffer, table, fmt=formats, delimiter=" ")
        body = buffer.getvalue().encode("ascii")
    else:
        body = records.tobytes()
    Path(path).write_bytes(("\n".join(header) + "\n").encode("ascii") + body)
