"""``ov3d-eval``: segment a labelled scan with its class names as queries and score it.

    ov3d-eval --scene ../shared/data/scannet/scene0000_00.npz --checkpoint CKPT --json

Prints one JSON object: miou, macc, fmiou, fmacc (percent, GGP on), miou_raw, macc_raw,
fmiou_raw, fmacc_raw (GGP off), per_class_iou (percent, GGP on; null = class absent), points,
seconds (process + one 20-class query), and provenance (checkpoint, device, voxels, weights).
The queries are the class names with no background candidates (closed-set, as the benchmark
protocol); f-metrics drop wall, floor and other furniture from the queries and ignore their
ground-truth points. ``--render OUT.png`` draws ground truth and prediction side by side, top-down.

Exit status: 0 on success, 2 when the scene or model cannot be used (the message says why; with
``--json`` it is also printed as ``{"error": ...}``).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ov3d_ros.core.checkpoint import CheckpointError
from ov3d_ros.core.segmenter import DeviceUnavailableError, InputFeatureError, ProcessedCloud, Segmenter
from ov3d_ros.core.text import TextEncoderError
from ov3d_ros.core.types import QuerySet
from ov3d_ros.eval.metrics import evaluate, restrict_classes
from ov3d_ros.eval.scannet20 import CLASS_COLORS, CLASS_SETS, FOREGROUND_EXCLUDED, nyu40_to_class_index
from ov3d_ros.io.errors import CloudFormatError


class EvalInputError(ValueError):
    """A scene that cannot be evaluated (no labels, unknown label set)."""


def predict(segmenter: Segmenter, processed: ProcessedCloud, class_names: tuple[str, ...], pooling: bool) -> np.ndarray:
    """(N,) predicted class index per point (-1 = none) with the class names as closed-set queries."""
    queries = QuerySet(positives=tuple(class_names), background=False)
    decision, _ = segmenter.voxel_decision(processed, queries, pooling=pooling)
    voxel_class = decision.semantic.cpu().numpy().astype(np.int64) - 1  # 0 (none) -> -1
    return voxel_class[processed.voxels.point_to_voxel]


def evaluate_scene(
    segmenter: Segmenter, scan, class_set: str = "scannet20", excluded: tuple[str, ...] = FOREGROUND_EXCLUDED
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Run the four evaluations (all / foreground classes x GGP on / off) on one scan.

    Returns the JSON-ready result and the per-point arrays (gt, pred) for rendering.
    """
    if scan.labels is None:
        raise EvalInputError("the scene has no per-point semantic labels (a ScanNet npz needs 'sem_nyu40')")
    if class_set not in CLASS_SETS:
        raise EvalInputError(f"unknown class set {class_set!r}; known: {', '.join(CLASS_SETS)}")
    class_names = CLASS_SETS[class_set]
    gt = nyu40_to_class_index(scan.labels)
    fg_gt, fg_names = restrict_classes(gt, class_names, excluded)

    start = time.perf_counter()
    processed = segmenter.process(scan)
    pred = predict(segmenter, processed, class_names, pooling=True)
    seconds = time.perf_counter() - start
    pred_raw = predict(segmenter, processed, class_names, pooling=False)
    fg_pred = predict(segmenter, processed, fg_names, pooling=True)
    fg_pred_raw = predict(segmenter, processed, fg_names, pooling=False)

    full, full_raw = evaluate(gt, pred, class_names), evaluate(gt, pred_raw, class_names)
    fg, fg_raw = evaluate(fg_gt, fg_pred, fg_names), evaluate(fg_gt, fg_pred_raw, fg_names)
    pct = lambda v: None if v is None or not np.isfinite(v) else round(100.0 * v, 2)  # noqa: E731
    result = {
        "miou": pct(full.miou),
        "macc": pct(full.macc),
        "fmiou": pct(fg.miou),
        "fmacc": pct(fg.macc),
        "miou_raw": pct(full_raw.miou),
        "macc_raw": pct(full_raw.macc),
        "fmiou_raw": pct(fg_raw.miou),
        "fmacc_raw": pct(fg_raw.macc),
        "per_class_iou": {name: pct(v) for name, v in full.per_class_iou.items()},
        "classes_present": [name for name, v in full.per_class_iou.items() if v is not None],
        "points": int(len(scan)),
        "labelled_points": full.points,
        "voxels": processed.num_voxels,
        "ggp": {**segmenter.config.ggp.record(), "calibrated": segmenter.ggp_calibrated},
        "seconds": round(seconds, 3),
        "process_timings": {k: round(v, 4) for k, v in processed.timings.items()},
    }
    return result, {"gt": gt, "pred": pred, "class_names": np.array(class_names)}


def render_comparison(points: np.ndarray, gt: np.ndarray, pred: np.ndarray, class_names, path: str | Path, title: str = "") -> Path:
    """Top-down scatter of ground truth and prediction, side by side, one colour per class."""
    return render_panels(points, [("ground truth", gt), ("prediction", pred)], class_names, path, title)


def render_panels(points: np.ndarray, panels, class_names, path: str | Path, title: str = "") -> Path:
    """Top-down scatters of ``points``, one panel per ``(title, (N,) class ids)``; -1 is grey."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    palette = np.array([(*(c / 255.0 for c in rgb), 1.0) for rgb in CLASS_COLORS])
    palette = palette[np.arange(len(class_names)) % len(palette)]
    grey = np.array([0.88, 0.88, 0.88, 1.0])
    order = np.argsort(points[:, 2])  # higher points drawn last, as seen from above

    def colours(ids: np.ndarray) -> np.ndarray:
        out = np.tile(grey, (len(ids), 1))
        valid = ids >= 0
        out[valid] = palette[ids[valid]]
        return out

    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 7), constrained_layout=True)
    for ax, (name, ids) in zip(np.atleast_1d(axes), panels):
        ax.scatter(points[order, 0], points[order, 1], c=colours(ids[order]), s=0.4, linewidths=0)
        ax.set_title(name)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    present = sorted(set(int(i) for i in np.unique(np.concatenate([ids for _, ids in panels])) if i >= 0))
    handles = [Patch(color=palette[i], label=str(class_names[i])) for i in present]
    handles.append(Patch(color=grey, label="ignored / none"))
    fig.legend(handles=handles, loc="lower center", ncol=min(10, len(handles)), fontsize=8, bbox_to_anchor=(0.5, -0.06))
    if title:
        fig.suptitle(title)
    path = Path(path)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ov3d-eval", description=__doc__.split("\n\n")[0])
    parser.add_argument("--scene", required=True, help="labelled scan (ScanNet npz layout, or a scan file with labels)")
    parser.add_argument("--checkpoint", default=None, help="checkpoint directory (default: the packaged model)")
    parser.add_argument("--classes", default="scannet20", choices=sorted(CLASS_SETS), help="class set used as queries")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--render", default=None, metavar="OUT.png", help="write a GT vs prediction top-down image")
    parser.add_argument(
        "--allow-untrained", action="store_true", help="accept a checkpoint marked untrained (plumbing checks only)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        from ov3d_ros.io.files import load_scan

        load_start = time.perf_counter()
        segmenter = Segmenter.from_checkpoint(
            args.checkpoint, device=args.device, allow_untrained=args.allow_untrained
        )
        scan = load_scan(args.scene)
        load_seconds = time.perf_counter() - load_start
        result, arrays = evaluate_scene(segmenter, scan, args.classes)
    except (
        CheckpointError,
        CloudFormatError,
        DeviceUnavailableError,
        EvalInputError,
        FileNotFoundError,
        InputFeatureError,
        TextEncoderError,
    ) as exc:
        message = f"{type(exc).__name__}: {exc}"
        if args.json:
            print(json.dumps({"error": message}))
        print(f"ov3d-eval: {message}", file=sys.stderr)
        return 2
    result.update(
        scene=str(args.scene),
        checkpoint=str(args.checkpoint) if args.checkpoint else "packaged default",
        weights="trained" if segmenter.metadata.trained else "untrained (plumbing only: metrics are meaningless)",
        text_encoder=segmenter.metadata.text_space.encoder_id,
        device=str(segmenter.device),
        load_seconds=round(load_seconds, 3),
    )
    if args.render:
        title = f"{Path(args.scene).stem}: mIoU {result['miou']}% (GGP on)"
        if not segmenter.metadata.trained:
            title += " -- UNTRAINED weights, plumbing only"
        result["render"] = str(render_comparison(scan.points, arrays["gt"], arrays["pred"], arrays["class_names"], args.render, title))
    if args.json:
        print(json.dumps(result))
    else:
        if not segmenter.metadata.trained:
            print(f"WARNING: {result['weights']}")
        print(f"{args.scene}: mIoU {result['miou']}  mAcc {result['macc']}  f-mIoU {result['fmiou']}  f-mAcc {result['fmacc']}"
              f"  (GGP off: mIoU {result['miou_raw']}  f-mIoU {result['fmiou_raw']})  {result['seconds']} s")  # fmt: skip
        for name, iou in result["per_class_iou"].items():
            if iou is not None:
                print(f"  {name:<16} {iou:6.2f}")
        if args.render:
            print(f"render: {result['render']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
