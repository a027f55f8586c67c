"""``ov3d-train calibrate-query``: pick the one-query rule for a trained student on held-out labelled scans.

    ov3d-train calibrate-query --student CKPT --data SCANS_OR_FOLDERS... [--out DIR] [--install]

Asks every ScanNet-20 class present in the scans alone, as the node does by default, for every
exclude x alias x margin of the grid (:mod:`.search`), and prints the best setting and the
references (vocabulary off, closed set) as JSON; writes ``--out``/query_calibration.json (every
setting's score). ``--install`` records the rule in the checkpoint's model.json (``query``): the
node and ``ov3d-eval`` then use it by default. Scans: labelled npz / ply / pcd files (NYU40 ids,
e.g. ``../shared/data/scannet_rooms``) or simulated recordings, or folders of them. Refused: the
evaluation scan (``../shared/data/scannet``, or a copy of it) and the student's or its teacher's
training data (as model.json lists it).

Exit codes: 0 done, 2 unusable model, data or arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .search import DEFAULT_ALIAS, DEFAULT_EXCLUDE, DEFAULT_MARGIN, QUERY_CALIBRATION_FILE


def _alias(text: str) -> float | None:
    return None if text.lower() in ("none", "off") else float(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--student", type=Path, default=None, help="student checkpoint directory (default: the packaged model)"
    )
    parser.add_argument(
        "--data",
        nargs="+",
        required=True,
        help="held-out labelled scans (npz/ply/pcd with NYU40 labels, simulated recordings) or folders",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help=f"folder for {QUERY_CALIBRATION_FILE} (default: the checkpoint's)"
    )
    parser.add_argument(
        "--exclude",
        type=float,
        nargs="+",
        default=list(DEFAULT_EXCLUDE),
        help="exclusion cosines tried (names at >= are left out; 1.01: none)",
    )
    parser.add_argument(
        "--alias",
        type=_alias,
        nargs="+",
        default=list(DEFAULT_ALIAS),
        help="alias cosines tried (names at >= count as the query; 'none': no aliases)",
    )
    parser.add_argument(
        "--margin", type=float, nargs="+", default=list(DEFAULT_MARGIN), help="vocabulary margins tried"
    )
    parser.add_argument("--install", action="store_true", help="record the result in the checkpoint's model.json")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def load_calibration_scans(sources) -> list[tuple[str, object]]:
    """(name, Scan with NYU40 labels) of each source: scan files as they are, simulated recordings
    with their classes mapped to NYU40 (as the GGP calibration reads them)."""
    from ...data.sources import load_source
    from ..ggp import simulated_room_scan

    scans = []
    for source in sources:
        scan = simulated_room_scan(source.path) if source.kind == "bag" else load_source(source).scan
        if scan.labels is None:
            raise ValueError(f"{source.path}: no per-point labels (a ScanNet npz needs 'sem_nyu40')")
        scans.append((source.path.name, scan))
    return scans


def training_scans_among(sources, training_data) -> list[str]:
    """The scan files among ``sources`` that the student or its teacher trained on, by ScanNet scan
    name: training copies a scan elsewhere (``ov3d-train scannet-rooms``), so the name is what
    identifies it. ``training_data`` is model.json's record; listed folders are looked into."""
    from ov3d_ros.io.files import SUFFIXES

    described = training_data if isinstance(training_data, dict) else {}
    teacher = described.get("teacher") if isinstance(described.get("teacher"), dict) else {}
    names: set[str] = set()
    for listed in [*described.get("sources", []), *(teacher.get("training_data") or [])]:
        path = Path(str(listed).split("@", 1)[0])  # "--data FOLDER@N" oversampling
        if path.is_dir():
            names.update(p.stem for p in path.rglob("*") if p.suffix.lower() in SUFFIXES)
        elif path.suffix.lower() in SUFFIXES:
            names.add(path.stem)
    return [str(s.path) for s in sources if s.kind == "file" and s.path.stem in names]


def main(args: argparse.Namespace) -> int:
    from ov3d_ros.core.checkpoint import CheckpointError, record_query_rule
    from ov3d_ros.core.segmenter import DEFAULT_CHECKPOINT, Segmenter
    from ov3d_ros.core.vocabulary import VocabularyError
    from ov3d_ros.io.errors import CloudFormatError

    from ...data.sources import EvaluationDataError, NoTrainingDataError, discover_sources
    from ..cli import calibration_json, training_rooms_among
    from .search import calibrate_query_rule, model_record, rule_grid

    started = time.perf_counter()
    checkpoint = Path(args.student) if args.student else DEFAULT_CHECKPOINT
    try:
        if not rule_grid(args.exclude, args.alias):
            raise ValueError("no --exclude / --alias pair with alias < exclude (or alias 'none') to try")
        segmenter = Segmenter.from_checkpoint(checkpoint, device=args.device)
        sources = discover_sources(args.data)  # refuses the real evaluation scan, by place and by content
        training = segmenter.metadata.training_data
        overlap = training_rooms_among(sources, training) + training_scans_among(sources, training)
        if overlap:
            raise ValueError(
                f"{len(overlap)} scan(s) are the student's training data (e.g. {overlap[0]}); "
                "calibrate on held-out scans"
            )
        scans = load_calibration_scans(sources)
        calibration = calibrate_query_rule(
            segmenter, scans, args.exclude, args.alias, args.margin, progress=not args.no_progress
        )
    except EvaluationDataError as exc:
        print(f"ov3d-train calibrate-query: the evaluation scan never chooses settings: {exc}", file=sys.stderr)
        return 2
    except (CheckpointError, CloudFormatError, NoTrainingDataError, OSError, ValueError, VocabularyError) as exc:
        print(f"ov3d-train calibrate-query: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else checkpoint
    out.mkdir(parents=True, exist_ok=True)
    (out / QUERY_CALIBRATION_FILE).write_text(calibration_json(calibration.to_dict()), encoding="utf-8")
    if args.install:
        record_query_rule(checkpoint, model_record(calibration))
    print(
        json.dumps(
            {
                "student": str(checkpoint),
                "scans": len(scans),
                "classes": calibration.classes,
                "best": calibration.best,
                "vocabulary_off": calibration.vocabulary_off,
                "closed_miou": calibration.closed_miou,
                "installed": bool(args.install),
                "table": str(out / QUERY_CALIBRATION_FILE),
                "seconds": round(time.perf_counter() - started, 1),
            },
            indent=2,
        )
    )
    return 0
