"""``ov3d-train scannet-rooms``: real labelled ScanNet scans -> a training folder and a validation folder.

    ov3d-train scannet-rooms --src ../shared/data/scannet_rooms --out runs/real \
        [--hold-out scene0005 scene0008]

Each scan is copied (the data stays outside the repository: ``runs/`` is ignored by git) to
``OUT/train/`` or, for the held-out rooms (every scan of a room: ``scene0005`` holds out
``scene0005_00`` and ``scene0005_01``), to ``OUT/val/``, with its ``<name>.annotations.json``
beside it (:mod:`.annotate`), which ``ov3d-train mpec`` reads. The evaluation scan
(``scannet/scene0000_00``) is refused. Prints a JSON summary (scans, entities, texts per split).

A model trained on these scans inherits ScanNet's Terms of Use (non-commercial research and
education): say so in its model card.

Exit codes: 0 done, 2 unusable arguments or data.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

DEFAULT_HOLD_OUT = ("scene0005", "scene0008")
SCANNET_TERMS = "ScanNet Terms of Use: non-commercial research and education only; no redistribution"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--src", type=Path, required=True, help="folder of ScanNet npz scans (xyz, rgb, sem_nyu40, inst)"
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder (train/ and val/ are written)")
    parser.add_argument(
        "--hold-out",
        nargs="*",
        default=list(DEFAULT_HOLD_OUT),
        metavar="ROOM",
        help="rooms (sceneXXXX) kept for validation, never for training",
    )


def room_of(scan_name: str) -> str:
    """``scene0005_01`` -> ``scene0005`` (ScanNet names a room's rescans _00, _01, ...)."""
    return scan_name.rsplit("_", 1)[0] if "_" in scan_name else scan_name


def annotate_scan(path: Path) -> dict:
    """The annotation sidecar of one ScanNet npz."""
    from .annotate import build_real_annotations
    from .room import measure_room

    with np.load(path) as data:
        missing = {"xyz", "sem_nyu40", "inst"} - set(data.files)
        if missing:
            raise ValueError(f"{path}: not a labelled ScanNet scan (missing {sorted(missing)})")
        colors = data["rgb"] if "rgb" in data.files else None
        room = measure_room(data["xyz"], colors, data["sem_nyu40"], data["inst"])
    return build_real_annotations(room, {"scan": path.stem, "dataset": "ScanNet v2", "terms": SCANNET_TERMS})


def main(args: argparse.Namespace) -> int:
    from ..data.sources import ANNOTATIONS_SUFFIX, EvaluationDataError, assert_not_evaluation_data

    scans = sorted(Path(args.src).glob("*.npz")) if Path(args.src).is_dir() else []
    if not scans:
        print(f"ov3d-train scannet-rooms: no .npz scans in {args.src}", file=sys.stderr)
        return 2
    hold_out = set(args.hold_out)
    summary: dict[str, dict] = {
        "train": {"scans": [], "entities": 0, "texts": 0},
        "val": {"scans": [], "entities": 0, "texts": 0},
    }
    for path in scans:
        try:
            assert_not_evaluation_data(path)
            annotations = annotate_scan(path)
        except (EvaluationDataError, ValueError, OSError) as exc:
            print(f"ov3d-train scannet-rooms: {exc}", file=sys.stderr)
            return 2
        split = "val" if room_of(path.stem) in hold_out else "train"
        folder = Path(args.out) / split
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, folder / path.name)
        (folder / f"{path.stem}{ANNOTATIONS_SUFFIX}").write_text(json.dumps(annotations, indent=1), encoding="utf-8")
        entry = summary[split]
        entry["scans"].append(path.stem)
        entry["entities"] += len(annotations["entities"])
        entry["texts"] += sum(len(e["captions"]) + len(e["referrals"]) for e in annotations["entities"])
    print(json.dumps({"out": str(args.out), "hold_out": sorted(hold_out), "terms": SCANNET_TERMS, **summary}, indent=1))
    return 0
