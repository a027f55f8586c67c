"""``ov3d-train report``: the accuracy report of a student (and its teacher) on the real data.

    ov3d-train report --out docs/accuracy [--student CKPT] [--teacher MPEC_RUN/teacher]

Writes into ``--out``: ``report.json`` (every number), ``report.md`` (the tables),
``per_class_iou.png``, ``ggp_sweep.png`` (mIoU over k and T), ``ggp_sweep_fmiou.png``,
``scannet_render.png`` (ground truth | student | student + GGP, top-down), ``confusion.png``
(where each class's points go: the shipped pooling, and the student's and the teacher's
semantics averaged over each true object) and ``mosd_affinity.png`` (pooling weight kept inside
objects, learned vs plain geometric).
Inputs default to the packaged student and ``$OV3D_SHARED_DATA`` (``../shared/data``):
``scannet/scene0000_00.npz`` and ``mosd/*.pcd``.

Exit codes: 0 done, 2 missing or unusable model / data.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="directory for report.json, report.md and the pictures")
    parser.add_argument(
        "--student", type=Path, default=None, help="student checkpoint directory (default: the packaged model)"
    )
    parser.add_argument(
        "--teacher", type=Path, default=None, help="the MPEC teacher directory, for its reference row (optional)"
    )
    parser.add_argument(
        "--scene", type=Path, default=None, help="labelled scan (default: <shared data>/scannet/scene0000_00.npz)"
    )
    parser.add_argument(
        "--mosd", type=Path, default=None, help="folder of mOSD .pcd clouds (default: <shared data>/mosd)"
    )
    parser.add_argument("--ks", type=int, nargs="+", default=[8, 16, 32, 64], help="GGP k values of the sweep")
    parser.add_argument(
        "--iterations", type=int, nargs="+", default=[0, 2, 4, 8, 16, 24, 32, 48], help="GGP T values of the sweep"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")


def main(args: argparse.Namespace) -> int:
    from ov3d_ros.checkout import shared_data
    from ov3d_ros.core.checkpoint import CheckpointError
    from ov3d_ros.core.segmenter import Segmenter
    from ov3d_ros.eval.scannet20 import CLASS_NAMES
    from ov3d_ros.io.files import load_scan

    from ..calibrate.ggp import unpooled_centering, variant_settings
    from . import plots
    from .affinity import mosd_affinity
    from .scannet import confusions, scannet_report, teacher_logits_on

    started = time.perf_counter()
    shared = shared_data()
    scene = args.scene or shared / "scannet" / "scene0000_00.npz"
    mosd_dir = args.mosd or shared / "mosd"
    try:
        segmenter = Segmenter.from_checkpoint(args.student, device=args.device)
        scan = load_scan(scene)
        if scan.labels is None:
            raise ValueError(f"{scene}: no per-point labels")
    except (CheckpointError, OSError, ValueError) as exc:
        print(f"ov3d-train report: {exc}", file=sys.stderr)
        return 2
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    embeddings = segmenter.text_encoder.encode(list(CLASS_NAMES))
    teacher = None
    if args.teacher is not None:
        print(f"teacher {args.teacher} on {scene.name} ...", flush=True)
        teacher = teacher_logits_on(args.teacher, segmenter, scan, embeddings)
    print(f"student on {scene.name}: {len(args.ks)} k x {len(args.iterations)} T x 4 pooling variants ...", flush=True)
    settings = variant_settings(segmenter.metadata)  # calibrated on held-out simulated rooms
    if not settings:
        print(
            "the student has no GGP calibration (ov3d-train calibrate): every variant at the segmenter's GGP",
            flush=True,
        )
    report = scannet_report(
        segmenter,
        scan,
        embeddings,
        teacher,
        tuple(args.ks),
        tuple(args.iterations),
        settings,
        unpooled_centering=unpooled_centering(segmenter.metadata),
    )
    mosd_files = sorted(Path(mosd_dir).glob("*.pcd"))
    print(f"affinity quality on {len(mosd_files)} mOSD clouds ...", flush=True)
    affinity = mosd_affinity(segmenter, mosd_files, settings) if mosd_files else []

    pictures = {
        "per_class_iou": plots.per_class_bars(report, out / "per_class_iou.png"),
        "ggp_sweep": plots.sweep_curves(report, out / "ggp_sweep.png", "miou"),
        "ggp_sweep_fmiou": plots.sweep_curves(report, out / "ggp_sweep_fmiou.png", "fmiou"),
        "scannet_render": plots.render_panels(report, out / "scannet_render.png"),
    }
    confusion = confusions(report)
    if confusion:
        pictures["confusion"] = plots.confusion_maps(confusion, out / "confusion.png")
    if affinity:
        pictures["mosd_affinity"] = plots.affinity_bars(affinity, out / "mosd_affinity.png")
    metadata = segmenter.metadata
    result = {
        "student": str(args.student or "packaged default"),
        "teacher": None if args.teacher is None else str(args.teacher),
        "scene": str(scene),
        "voxel_size": report.voxel_size,
        "voxels": report.voxels,
        "ggp_shipped": report.shipped.record(),
        "ggp_settings": {variant: setting.record() for variant, setting in report.settings.items()},
        "ggp_calibration": (metadata.ggp or {}).get("calibration"),
        "scannet": {name: {**s.row(), "per_class_iou": s.per_class_iou} for name, s in report.variants.items()},
        "bounds": {name: s.row() for name, s in report.bounds.items()},
        "sweep": report.sweep,
        "confusion": confusion,
        "mosd_affinity": [asdict(a) for a in affinity],
        "text_encoder": getattr(metadata, "text_encoder", None) and str(metadata.text_encoder),
        "device": str(segmenter.device),
        "seconds": round(time.perf_counter() - started, 1),
        "pictures": {k: Path(v).name for k, v in pictures.items()},
    }
    (out / "report.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (out / "report.md").write_text(markdown(result), encoding="utf-8")
    print(markdown(result))
    return 0


def markdown(result: dict) -> str:
    from .plots import LABELS

    settings = result.get("ggp_settings") or {}
    unpooled = ((result.get("ggp_calibration") or {}).get("no_pooling_centered") or {}).get("centering")
    lines = [
        "| variant | GGP k / tau / T / cells / centering | mIoU | mAcc | f-mIoU | f-mAcc |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in result["scannet"].items():
        ggp = settings.get(name)
        cell = (
            f"{ggp['k']} / {ggp['tau']:g} / {ggp['iterations']} / {ggp.get('coarsen', 1)} / {ggp.get('centering', 0.0):g}"
            if ggp
            else (f"- / - / 0 / - / {unpooled:g}" if name == "student_centered" else "-")
        )
        lines.append(
            f"| {LABELS[name]} | {cell} | {row['miou']:.2f} | {row['macc']:.2f} | {row['fmiou']:.2f} | {row['fmacc']:.2f} |"
        )
    s = result["scannet"]
    if "ggp_learned" in s:
        best_plain = max(s[v]["miou"] for v in ("ggp_uniform", "ggp_distance", "ggp_geometric"))
        where = (
            "each variant at its tau / T / cells / centering calibrated on held-out simulated rooms"
            if result.get("ggp_calibration")
            else f"all at k={result['ggp_shipped']['k']}, T={result['ggp_shipped']['iterations']}"
        )
        unpooled_best = max(s[v]["miou"] for v in ("student", "student_centered") if v in s)
        lines += [
            "",
            f"GGP learned vs no pooling: {s['ggp_learned']['miou'] - unpooled_best:+.2f} mIoU (the better unpooled row); "
            f"vs the best plain geometric pooling: {s['ggp_learned']['miou'] - best_plain:+.2f} mIoU ({where}).",
        ]
    if result.get("bounds"):
        lines += [
            "",
            "What pooling could add (bounds; see ov3d_training.report.scannet):",
            "",
            "| bound | mIoU | mAcc | f-mIoU | f-mAcc |",
            "|---|---|---|---|---|",
        ]
        for name, row in result["bounds"].items():
            lines.append(
                f"| {LABELS[name]} | {row['miou']:.2f} | {row['macc']:.2f} | {row['fmiou']:.2f} | {row['fmacc']:.2f} |"
            )
    confusion = result.get("confusion") or {}
    if confusion:
        variants = list(confusion)
        lines += [
            "",
            "Where each class's points go (percent of the class's points; the three largest shares):",
            "",
            "| true class | " + " | ".join(LABELS[v] for v in variants) + " |",
            "|---|" + "---|" * len(variants),
        ]
        for name in confusion[variants[0]]:
            cells = (
                ", ".join(f"{given} {share:.0f}" for given, share in list(confusion[v][name].items())[:3])
                for v in variants
            )
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if result["mosd_affinity"]:
        variants = list(result["mosd_affinity"][0]["inside_one_step"])
        lines += [
            "",
            "| mOSD cloud | voxels | objects | " + " | ".join(f"{LABELS[v]} (W / W^T)" for v in variants) + " |",
            "|---|---|---|" + "---|" * len(variants),
        ]
        for a in result["mosd_affinity"]:
            cells = " | ".join(f"{a['inside_one_step'][v]:.3f} / {a['inside_t_steps'][v]:.3f}" for v in variants)
            lines.append(f"| {a['name']} | {a['voxels']} | {a['objects']} | {cells} |")
        means = " | ".join(
            f"**{sum(a['inside_one_step'][v] for a in result['mosd_affinity']) / len(result['mosd_affinity']):.3f} / "
            f"{sum(a['inside_t_steps'][v] for a in result['mosd_affinity']) / len(result['mosd_affinity']):.3f}**"
            for v in variants
        )
        lines.append(f"| mean | | | {means} |")
    return "\n".join(lines) + "\n"
