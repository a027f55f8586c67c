"""``ov3d-train calibrate``: pick GGP's tau and T for a trained student on held-out simulated rooms.

    ov3d-train calibrate --student CKPT --data SIM_DIR_OR_BAGS... [--out DIR] [--install]

Each room keeps a random share of its voxels, as the student's training items did (``--keep-ratio``,
default from the student's recipe): see :mod:`.ggp`. Prints the best setting of every pooling
variant as JSON and writes ``--out``/ggp_calibration.json
(the whole tau x T table). ``--install`` records the learned variant's setting, with the others'
for the report, in the checkpoint's model.json (``ggp``): the node, ``ov3d-eval`` and the report
then use it by default. The rooms must not be what the student or its teacher trained on (its
model.json lists their sources, and the generated rooms among them by generator, seed and index,
so a moved or re-rendered copy is refused too) nor the real evaluation scans; render fresh ones
with ``ov3d-train sim --start`` beyond the training range (module doc of :mod:`.ggp`).

Exit codes: 0 done, 2 unusable model, data or arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .ggp import CALIBRATION_FILE, DEFAULT_CENTERING, DEFAULT_COARSEN, DEFAULT_ITERATIONS, DEFAULT_TAUS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--student", type=Path, default=None, help="student checkpoint directory (default: the packaged model)"
    )
    parser.add_argument(
        "--data", nargs="+", required=True, help="held-out simulated recordings (bag folders or their parent)"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help=f"folder for {CALIBRATION_FILE} (default: the checkpoint's)"
    )
    parser.add_argument("--taus", type=float, nargs="+", default=list(DEFAULT_TAUS), help="temperatures tried")
    parser.add_argument("--iterations", type=int, nargs="+", default=list(DEFAULT_ITERATIONS), help="passes T tried")
    parser.add_argument(
        "--coarsen",
        type=int,
        nargs="+",
        default=list(DEFAULT_COARSEN),
        help="pooling cell widths tried, in voxels (1: plain GGP; > 1: coarse-to-fine)",
    )
    parser.add_argument(
        "--centering",
        type=float,
        nargs="+",
        default=list(DEFAULT_CENTERING),
        help="shares of each cloud's mean semantic feature removed before pooling, tried (0: none)",
    )
    parser.add_argument(
        "--keep-ratio",
        type=float,
        nargs=2,
        default=None,
        metavar=("LOW", "HIGH"),
        help="share of each room's voxels kept, uniform in [LOW, HIGH] (default: the student's training "
        "items', from its recipe; 1 1 keeps rooms as rendered)",
    )
    parser.add_argument("--install", action="store_true", help="record the result in the checkpoint's model.json")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def training_rooms_among(sources, training_data) -> list[str]:
    """The sources that the student or its teacher trained on: the same path, or the same generated
    room (generator, seed, index) rendered anywhere else. ``training_data`` is model.json's record."""
    from ..data.sources import generated_room_identity

    described = training_data if isinstance(training_data, dict) else {}
    teacher = described.get("teacher") if isinstance(described.get("teacher"), dict) else {}
    paths = {str(Path(s).resolve()) for s in [*described.get("sources", []), *(teacher.get("training_data") or [])]}
    rooms = set(described.get("rooms", []))
    return [str(s.path) for s in sources if str(s.path) in paths or generated_room_identity(s) in rooms]


def calibration_json(record: dict) -> str:
    """The calibration as indented JSON with one line per table row (thousands of rows: a line
    each keeps the file small and its diffs readable)."""
    head = json.dumps({key: value for key, value in record.items() if key != "table"}, indent=2)
    rows = ",\n".join("    " + json.dumps(row) for row in record.get("table", []))
    return head[:-2] + ',\n  "table": [\n' + rows + "\n  ]\n}\n"


def main(args: argparse.Namespace) -> int:
    from ov3d_ros.core.checkpoint import CheckpointError, record_ggp
    from ov3d_ros.core.ggp import GGPConfig
    from ov3d_ros.core.segmenter import DEFAULT_CHECKPOINT, Segmenter, SegmenterConfig
    from ov3d_ros.eval.scannet20 import CLASS_NAMES

    from ..data.sources import EvaluationDataError, NoTrainingDataError, discover_sources
    from .ggp import calibrate_ggp, check_keep_ratio, model_record, simulated_room_scan, training_keep_ratio

    started = time.perf_counter()
    checkpoint = Path(args.student) if args.student else DEFAULT_CHECKPOINT
    try:
        if any(t < 0 for t in args.iterations) or any(not t > 0 for t in args.taus) or any(c < 1 for c in args.coarsen):
            raise ValueError("--taus must be > 0, --iterations >= 0 and --coarsen >= 1")
        if any(not 0.0 <= a <= 1.0 for a in args.centering):
            raise ValueError("--centering values must lie in [0, 1]")
        if args.keep_ratio:
            check_keep_ratio(args.keep_ratio, "--keep-ratio")
        # from the library's GGP defaults, not an earlier calibration: k is kept, tau and T are searched
        config = SegmenterConfig(device=args.device, ggp=GGPConfig())
        segmenter = Segmenter.from_checkpoint(checkpoint, device=args.device, config=config)
        sources = discover_sources(args.data)  # refuses the real evaluation scans
        overlap = training_rooms_among(sources, segmenter.metadata.training_data)
        if overlap:
            raise ValueError(
                f"{len(overlap)} room(s) are the student's training data (e.g. {overlap[0]}); "
                "calibrate on held-out rooms (ov3d-train sim --start beyond the training range)"
            )
        if any(s.kind != "bag" for s in sources):
            raise ValueError("calibration reads simulated recordings (bag folders with annotations), not scan files")
        keep_ratio = check_keep_ratio(
            args.keep_ratio or training_keep_ratio(segmenter.metadata),
            "--keep-ratio" if args.keep_ratio else "the student recipe's augment.keep_ratio",
        )
        rooms = [(s.path.name, simulated_room_scan(s.path)) for s in sources]
    except (CheckpointError, EvaluationDataError, NoTrainingDataError, OSError, ValueError) as exc:
        print(f"ov3d-train calibrate: {exc}", file=sys.stderr)
        return 2
    calibration = calibrate_ggp(
        segmenter,
        rooms,
        segmenter.text_encoder.encode(list(CLASS_NAMES)),
        tuple(args.taus),
        tuple(args.iterations),
        progress=not args.no_progress,
        keep_ratio=keep_ratio,
        coarsen=tuple(sorted(set(args.coarsen))),
        centering=tuple(sorted(set(args.centering))),
    )
    out = Path(args.out) if args.out else checkpoint
    out.mkdir(parents=True, exist_ok=True)
    (out / CALIBRATION_FILE).write_text(calibration_json(calibration.to_dict()), encoding="utf-8")
    if args.install:
        record_ggp(checkpoint, model_record(calibration))
    print(
        json.dumps(
            {
                "student": str(checkpoint),
                "rooms": len(rooms),
                "keep_ratio": list(keep_ratio),
                "k": calibration.k,
                "best": calibration.best,
                "no_pooling": calibration.no_pooling,
                "no_pooling_centered": calibration.no_pooling_centered,
                "ceiling": calibration.ceiling,
                "installed": bool(args.install),
                "table": str(out / CALIBRATION_FILE),
                "seconds": round(time.perf_counter() - started, 1),
            },
            indent=2,
        )
    )
    return 0
