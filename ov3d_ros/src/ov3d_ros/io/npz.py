"""npz scans: the project's own layout and the ScanNet layout of ``../shared/data/scannet``.

Own layout (:func:`write_npz`): ``points``, optional ``colors``, ``normals``, ``labels``,
``instances``, ``features``; ``frame_id`` and ``stamp_ns`` as 0-d arrays; JSON-serialisable meta in
``meta_json``; array-valued meta entries as ``meta__<key>``. Loaded without pickle.

ScanNet layout: ``xyz``, ``rgb``, ``sem_nyu40`` (-> labels, NYU40 ids), ``inst`` (-> instances),
plus ``images``, ``intrinsics``, ``cam2world`` which :func:`read_scannet_frames` loads on demand
(they are large and most users only want the points).
"""

from __future__ import annotations

import json
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import CloudFormatError
from .field_conventions import finite_rows
from .scan import Scan

_SCAN_ARRAYS = ("colors", "normals", "labels", "instances", "features")
_META_ARRAY_PREFIX = "meta__"
_META_DICT_PREFIX = "metadict__"  # metadict__<key>__<name>: meta[key][name], e.g. extra_fields
SCANNET_KEYS = ("xyz", "rgb")
SCANNET_FRAME_KEYS = ("images", "intrinsics", "cam2world")


@dataclass
class ScanNetFrames:
    """Posed colour frames stored beside a ScanNet scan."""

    images: np.ndarray  # (F, H, W, 3) uint8
    intrinsics: np.ndarray  # (4, 4) pinhole K of the colour camera
    cam2world: np.ndarray  # (F, 4, 4) camera-to-world, same frame as the points


def _open(path: Path) -> Any:
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise CloudFormatError(f"{path}: not a readable npz archive: {exc}") from exc


def _get(archive: Any, key: str, path: Path) -> np.ndarray:
    try:
        return archive[key]
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise CloudFormatError(f"{path}: array '{key}' cannot be read: {exc}") from exc


def is_scannet_npz(keys: list[str]) -> bool:
    return all(k in keys for k in SCANNET_KEYS)


def _scannet_scan(archive: Any, path: Path, frame_id: str) -> Scan:
    keys = list(archive.files)
    labels = _get(archive, "sem_nyu40", path) if "sem_nyu40" in keys else None
    instances = _get(archive, "inst", path) if "inst" in keys else None
    meta = {
        "source": str(path),
        "layout": "scannet",
        "label_set": "nyu40" if labels is not None else None,
        "has_frames": all(k in keys for k in SCANNET_FRAME_KEYS),
    }
    try:
        return Scan(
            _get(archive, "xyz", path),
            _get(archive, "rgb", path),
            None,
            labels,
            instances,
            frame_id=frame_id,
            meta=meta,
        )
    except ValueError as exc:
        raise CloudFormatError(f"{path}: inconsistent ScanNet arrays: {exc}") from exc


def _own_scan(archive: Any, path: Path) -> Scan:
    keys = list(archive.files)
    if "points" not in keys:
        raise CloudFormatError(
            f"{path}: npz has neither 'points' (ov3d layout) nor 'xyz'+'rgb' (ScanNet layout); keys: {keys}"
        )
    arrays = {name: _get(archive, name, path) for name in _SCAN_ARRAYS if name in keys}
    meta: dict[str, Any] = {}
    if "meta_json" in keys:
        try:
            meta = json.loads(str(_get(archive, "meta_json", path)))
        except json.JSONDecodeError as exc:
            raise CloudFormatError(f"{path}: meta_json is not valid JSON: {exc}") from exc
    for key in keys:
        if key.startswith(_META_ARRAY_PREFIX):
            meta[key[len(_META_ARRAY_PREFIX) :]] = _get(archive, key, path)
        elif key.startswith(_META_DICT_PREFIX) and "__" in key[len(_META_DICT_PREFIX) :]:
            outer, inner = key[len(_META_DICT_PREFIX) :].split("__", 1)
            meta.setdefault(outer, {})[inner] = _get(archive, key, path)
    if "organized_shape" in meta:
        meta["organized_shape"] = tuple(int(v) for v in meta["organized_shape"])
    frame_id = str(_get(archive, "frame_id", path)) if "frame_id" in keys else "map"
    stamp_ns = int(_get(archive, "stamp_ns", path)) if "stamp_ns" in keys else 0
    try:
        return Scan(_get(archive, "points", path), frame_id=frame_id, stamp_ns=stamp_ns, meta=meta, **arrays)
    except ValueError as exc:
        raise CloudFormatError(f"{path}: inconsistent scan arrays: {exc}") from exc


def read_npz(path: str | Path, *, skip_nans: bool = True, frame_id: str = "map") -> Scan:
    path = Path(path)
    with _open(path) as archive:
        if is_scannet_npz(list(archive.files)):
            scan = _scannet_scan(archive, path, frame_id)
        else:
            scan = _own_scan(archive, path)
    scan.meta.setdefault("source", str(path))
    if skip_nans and len(scan):
        finite = finite_rows(scan.points)
        if not finite.all():
            kept = scan.subset(finite)
            kept.meta["valid_index"] = np.flatnonzero(finite)
            return kept
    return scan


def read_scannet_frames(path: str | Path) -> ScanNetFrames:
    """The posed RGB frames of a ScanNet-layout npz."""
    path = Path(path)
    with _open(path) as archive:
        missing = [k for k in SCANNET_FRAME_KEYS if k not in archive.files]
        if missing:
            raise CloudFormatError(f"{path}: no {', '.join(missing)} in this npz (keys: {archive.files})")
        return ScanNetFrames(*(_get(archive, k, path) for k in SCANNET_FRAME_KEYS))


def _plain_array(value: Any) -> bool:
    return isinstance(value, np.ndarray) and not value.dtype.hasobject


def _json_ready(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def write_npz(scan: Scan, path: str | Path, *, compress: bool = True) -> None:
    """Write ``scan`` in the own layout.

    Meta entries that are JSON, plain arrays or dicts of plain arrays (``extra_fields``) are kept;
    anything else is dropped with a warning.
    """
    arrays: dict[str, Any] = {"points": scan.points}  # Any: numpy's stub reads ** as its flags
    for name in _SCAN_ARRAYS:
        value = getattr(scan, name)
        if value is not None:
            arrays[name] = value
    arrays["frame_id"] = np.array(scan.frame_id)
    arrays["stamp_ns"] = np.array(scan.stamp_ns, dtype=np.int64)
    json_meta: dict[str, Any] = {}
    for key, value in scan.meta.items():
        if _plain_array(value):
            arrays[_META_ARRAY_PREFIX + key] = value
        elif isinstance(value, dict) and value and all(_plain_array(v) for v in value.values()):
            for name, array in value.items():
                arrays[f"{_META_DICT_PREFIX}{key}__{name}"] = array
        elif _json_ready(value):
            json_meta[key] = value
        else:
            warnings.warn(f"scan.meta[{key!r}] is neither JSON nor a plain array; not saved", stacklevel=2)
    arrays["meta_json"] = np.array(json.dumps(json_meta))
    (np.savez_compressed if compress else np.savez)(Path(path), **arrays)
