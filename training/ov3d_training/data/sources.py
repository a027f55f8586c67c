"""Training inputs: find recordings and scan files, load each as one scan + its annotations.

Accepted on the command line (``--data``), in any mix:

* a rosbag2 recording directory (has ``metadata.yaml``) -- the simulator's format. Its training
  scan is the *last* cloud of the recording: the fused map only grows, so the last one is the
  most complete. Annotations come from the ``annotations.json`` beside ``metadata.yaml``;
* a ``.mcap`` / ``.db3`` file inside such a directory (the directory is used);
* a scan file ``.npz`` / ``.ply`` / ``.pcd``; its annotations, if any, are in
  ``<name>.annotations.json`` beside it;
* a directory of any of the above, searched recursively.

The ScanNet scan in ``../shared/data/scannet`` is the evaluation scan and is refused as training
data, by location (anything that resolves into that folder) and by content (a copy elsewhere has
the same bytes): :class:`EvaluationDataError`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ov3d_ros.checkout import shared_data
from ov3d_ros.core.provenance import file_sha256
from ov3d_ros.io.errors import CloudFormatError
from ov3d_ros.io.scan import Scan

SCAN_SUFFIXES = (".npz", ".ply", ".pcd")
BAG_FILE_SUFFIXES = (".mcap", ".db3")
ANNOTATIONS_SUFFIX = ".annotations.json"


class EvaluationDataError(ValueError):
    """A training input that is (a copy of) the held-out evaluation scan."""


class NoTrainingDataError(ValueError):
    """--data named nothing usable."""


def evaluation_dir() -> Path:
    return shared_data() / "scannet"


@dataclass(frozen=True)
class Source:
    path: Path  # bag directory or scan file, resolved
    kind: str  # "bag" | "file"


@dataclass
class LoadedSource:
    scan: Scan
    annotations: dict | None
    source: Source


def split_repeat(raw: str | Path) -> tuple[Path, int]:
    """``PATH@N`` -> (PATH, N): every source under PATH enters each epoch N times (a few real
    rooms beside many simulated ones get their share of the steps); a plain PATH repeats once. A
    path that exists as written is never split."""
    text = str(raw)
    head, sep, count = text.rpartition("@")
    if not sep or Path(text).expanduser().exists():
        return Path(text).expanduser(), 1
    if not count.isdigit() or int(count) < 1:
        raise NoTrainingDataError(f"--data {text}: the repeat after '@' must be a whole number >= 1")
    return Path(head).expanduser(), int(count)


def source_repeats(paths: list[str | Path], sources: list[Source]) -> list[int]:
    """How many times each of ``sources`` (from :func:`discover_sources` on ``paths``) enters an
    epoch: the largest ``@N`` of the arguments it was found under."""
    repeats = {source.path: 1 for source in sources}
    for raw in paths:
        path, count = split_repeat(raw)
        for source in _expand(path.resolve()):
            if source.path in repeats:
                repeats[source.path] = max(repeats[source.path], count)
    return [repeats[source.path] for source in sources]


def repeat_each(items: list, repeats: list[int]) -> list:
    """``items`` with item i written ``repeats[i]`` times, in order."""
    return [item for item, count in zip(items, repeats) for _ in range(count)]


def discover_sources(paths: list[str | Path]) -> list[Source]:
    """Expand ``--data`` arguments into bag directories and scan files (sorted, unique; a
    ``PATH@N`` argument is read as PATH, see :func:`split_repeat`)."""
    found: dict[Path, Source] = {}
    for raw in paths:
        path, _ = split_repeat(raw)
        if not path.exists():
            raise NoTrainingDataError(f"--data {path}: no such file or directory")
        for source in _expand(path.resolve()):
            assert_not_evaluation_data(source.path)
            found.setdefault(source.path, source)
    if not found:
        raise NoTrainingDataError(
            f"--data {' '.join(map(str, paths))}: no rosbag2 recordings or {'/'.join(SCAN_SUFFIXES)} scans found"
        )
    return [found[p] for p in sorted(found)]


def _expand(path: Path) -> list[Source]:
    if path.is_dir():
        if (path / "metadata.yaml").is_file():
            return [Source(path, "bag")]
        out: list[Source] = []
        for child in sorted(path.iterdir()):
            if child.is_dir() or child.suffix.lower() in SCAN_SUFFIXES:
                out.extend(_expand(child))
        return out
    suffix = path.suffix.lower()
    if suffix in BAG_FILE_SUFFIXES and (path.parent / "metadata.yaml").is_file():
        return [Source(path.parent, "bag")]
    if suffix in SCAN_SUFFIXES:
        return [Source(path, "file")]
    return []


def assert_not_evaluation_data(path: Path) -> None:
    """Raise :class:`EvaluationDataError` if ``path`` is, contains or copies the evaluation scan."""
    path = Path(path).resolve()
    evaluation = evaluation_dir().resolve()
    if path == evaluation or evaluation in path.parents or (path.is_dir() and path in evaluation.parents):
        raise EvaluationDataError(
            f"{path} is the held-out ScanNet evaluation data ({evaluation}); it is used only for validation, "
            "never for training"
        )
    if path.is_file():
        for held_out in _evaluation_files(str(evaluation)):
            if path.stat().st_size == held_out[1] and file_sha256(path) == held_out[2]:
                raise EvaluationDataError(
                    f"{path} is a copy of the held-out evaluation scan {held_out[0]}; it is never used for training"
                )


@lru_cache(maxsize=4)
def _evaluation_files(evaluation: str) -> tuple[tuple[str, int, str], ...]:
    folder = Path(evaluation)
    if not folder.is_dir():
        return ()
    return tuple((str(p), p.stat().st_size, file_sha256(p)) for p in sorted(folder.glob("*.npz")))


def annotations_path(source: Source) -> Path:
    if source.kind == "bag":
        from ov3d_ros.io.bags import ANNOTATIONS_FILE

        return source.path / ANNOTATIONS_FILE
    return source.path.with_name(source.path.name[: -len(source.path.suffix)] + ANNOTATIONS_SUFFIX)


def load_source(source: Source) -> LoadedSource:
    """The training scan of one source and its annotations (None when there are none)."""
    if source.kind == "bag":
        from ov3d_ros.io.bags import read_annotations, read_bag

        last = None
        for frame in read_bag(source.path):
            last = frame  # the fused map grows: the last cloud is the most complete
        if last is None:
            raise CloudFormatError(f"{source.path}: the recording holds no point cloud")
        scan = last.scan
        annotations = read_annotations(source.path)
    else:
        from ov3d_ros.io.files import load_scan

        scan = load_scan(source.path)
        sidecar = annotations_path(source)
        annotations = None
        if sidecar.is_file():
            try:
                annotations = json.loads(sidecar.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise CloudFormatError(f"{sidecar}: not valid JSON: {exc}") from exc
    scan.meta.setdefault("source", str(source.path))
    return LoadedSource(scan, annotations, source)


def generated_room_identity(source: Source) -> str | None:
    """Which generated room a recording is, independent of where it lies: ``generator:seed=S:scene=I``
    from the ``recording`` block the simulator writes into its annotations; None for anything else
    (real recordings, scan files). The same generator, seed and index make the same room, so this
    is what keeps a student's training rooms out of its calibration even after they are moved or
    re-rendered elsewhere."""
    if source.kind != "bag" or not annotations_path(source).is_file():
        return None
    from ov3d_ros.io.bags import read_annotations

    recording = (read_annotations(source.path) or {}).get("recording")
    if not isinstance(recording, dict) or not {"generator", "seed", "scene_index"} <= recording.keys():
        return None
    return f"{recording['generator']}:seed={int(recording['seed'])}:scene={int(recording['scene_index'])}"


def source_fingerprint(source: Source) -> dict:
    """What identifies a source's content cheaply (paths, sizes, modification times)."""
    files = [source.path] if source.kind == "file" else sorted(p for p in source.path.iterdir() if p.is_file())
    sidecar = annotations_path(source)
    if source.kind == "file" and sidecar.is_file():
        files.append(sidecar)
    return {"path": str(source.path), "files": [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]}
