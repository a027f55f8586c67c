"""Load and save scans by file suffix: ``.ply``, ``.pcd`` and ``.npz``.

Every loader returns a :class:`Scan`; ``skip_nans=True`` (the default, as for PointCloud2) drops
points with a non-finite coordinate and records the kept points' original indices in
``scan.meta["valid_index"]``, so labels and per-pixel data stay aligned. Organised PCDs keep
``meta["organized_shape"] = (height, width)``. Files that cannot be trusted raise
:class:`CloudFormatError`; missing files raise FileNotFoundError.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import CloudFormatError
from .npz import ScanNetFrames, read_npz, read_scannet_frames, write_npz
from .pcd import read_pcd, write_pcd
from .ply import read_ply, write_ply
from .scan import Scan

SUFFIXES = (".ply", ".pcd", ".npz")


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise CloudFormatError(
            f"{path}: unsupported file type {suffix or '(none)'!r}; expected one of {', '.join(SUFFIXES)}"
        )
    return suffix


def load_scan(path: str | Path, *, skip_nans: bool = True, frame_id: str = "map") -> Scan:
    """Read a scan from a PLY, PCD or npz (own or ScanNet layout) file."""
    path = Path(path)
    suffix = _suffix(path)
    if not path.is_file():
        raise FileNotFoundError(f"no scan file at {path}")
    if suffix == ".ply":
        return read_ply(path, skip_nans=skip_nans, frame_id=frame_id)
    if suffix == ".pcd":
        return read_pcd(path, skip_nans=skip_nans, frame_id=frame_id)
    return read_npz(path, skip_nans=skip_nans, frame_id=frame_id)


def save_scan(scan: Scan, path: str | Path, **options: Any) -> None:
    """Write ``scan`` by suffix. Options: PLY ``fmt`` (ascii / binary_little_endian /
    binary_big_endian), PCD ``data`` (ascii / binary / binary_compressed), npz ``compress``.

    Only the npz layout keeps everything (frame id, stamp, meta); PLY and PCD keep the
    per-point arrays (PCD also the organised grid).
    """
    path = Path(path)
    suffix = _suffix(path)
    writers: dict[str, Callable[..., None]] = {".ply": write_ply, ".pcd": write_pcd, ".npz": write_npz}
    writer = writers[suffix]
    writer(scan, path, **options)


__all__ = ["SUFFIXES", "ScanNetFrames", "load_scan", "read_scannet_frames", "save_scan"]
