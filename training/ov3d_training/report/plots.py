"""Pictures of the accuracy report: per-class IoU bars, k / T sweeps, segmentation renders, affinity bars."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ov3d_ros.eval.scannet20 import CLASS_NAMES

from .affinity import CloudAffinity
from .scannet import ScanNetReport

LABELS = {
    "teacher": "teacher (MPEC)",
    "student": "student, no pooling",
    "student_centered": "student, centred, no pooling",
    "ggp_uniform": "GGP uniform weights",
    "ggp_distance": "GGP distance weights",
    "ggp_geometric": "GGP geometric embedding",
    "ggp_learned": "GGP learned affinity",
    "ggp_uniform_voxels": "GGP uniform weights, on voxels",
    "ggp_distance_voxels": "GGP distance weights, on voxels",
    "ggp_geometric_voxels": "GGP geometric embedding, on voxels",
    "ggp_learned_voxels": "GGP learned affinity, on voxels",
    "student_instance_mean": "student, mean over each true object (pooling's ceiling)",
    "teacher_instance_mean": "teacher, mean over each true object (pooling's ceiling)",
    "teacher_ggp_uniform": "teacher + GGP uniform weights",
    "teacher_ggp_distance": "teacher + GGP distance weights",
    "teacher_ggp_geometric": "teacher + GGP geometric embedding",
    "teacher_ggp_learned": "teacher + GGP learned affinity (GeoPurify's setting)",
}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def per_class_bars(
    report: ScanNetReport, path: Path, variants=("teacher", "student", "ggp_distance", "ggp_learned")
) -> Path:
    plt = _pyplot()
    variants = [v for v in variants if v in report.variants]
    names = [n for n in CLASS_NAMES if report.variants["student"].per_class_iou.get(n) is not None]
    width = 0.8 / len(variants)
    fig, ax = plt.subplots(figsize=(13, 4.5), constrained_layout=True)
    x = np.arange(len(names))
    for i, variant in enumerate(variants):
        ious = [report.variants[variant].per_class_iou.get(n) or 0.0 for n in names]
        ax.bar(
            x + (i - (len(variants) - 1) / 2) * width,
            ious,
            width,
            label=f"{LABELS[variant]} (mIoU {report.variants[variant].miou:.1f})",
        )
    ax.set_xticks(x, names, rotation=35, ha="right")
    ax.set_ylabel("IoU (%)")
    ax.set_title("ScanNet scene0000_00, ScanNet-20 names as queries: per-class IoU (classes present)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def sweep_curves(report: ScanNetReport, path: Path, metric: str = "miou") -> Path:
    plt = _pyplot()
    rows = report.sweep
    ks = sorted({r["k"] for r in rows})
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5), constrained_layout=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, variant_pair in zip(axes, (("ggp_learned", "ggp_distance"), ("ggp_geometric", "ggp_uniform"))):
        for ci, k in enumerate(ks):
            for variant, style in zip(variant_pair, ("-", "--")):
                cells = report.settings[variant].coarsen if variant in report.settings else 1
                pts = sorted(
                    (r["T"], r[metric])
                    for r in rows
                    if r["k"] == k and r["variant"] == variant and r.get("coarsen", 1) == cells
                )
                ax.plot(
                    *zip(*pts),
                    style,
                    color=colors[ci % len(colors)],
                    marker="o",
                    ms=3,
                    label=f"k={k} {LABELS[variant]}",
                )
        ax.axhline(report.variants["student"].row()[metric], color="grey", lw=1, ls=":", label="no pooling")
        ax.set_xlabel("iterations T")
        ax.set_ylabel(f"{'mIoU' if metric == 'miou' else 'f-mIoU'} (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    shipped = report.shipped
    cells = f", cells of {shipped.coarsen}^3 voxels" if shipped.coarsen > 1 else ""
    fig.suptitle(
        f"GGP sweeps on ScanNet scene0000_00, each variant at its own tau and cells "
        f"(shipped: k={shipped.k}, T={shipped.iterations}, tau={shipped.tau}{cells})"
    )
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def render_panels(report: ScanNetReport, path: Path, variants=("student", "ggp_learned")) -> Path:
    """Top-down views: ground truth and each variant's prediction, one colour per class."""
    from ov3d_ros.eval.cli import render_panels as draw

    panels = [("ground truth", report.target)] + [
        (LABELS[v], report.predictions[v]) for v in variants if v in report.predictions
    ]
    return draw(report.points, panels, CLASS_NAMES, path)


def affinity_bars(results: list[CloudAffinity], path: Path) -> Path:
    plt = _pyplot()
    variants = list(results[0].inside_one_step)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4), constrained_layout=True)
    x = np.arange(len(results))
    width = 0.8 / len(variants)
    for ax, attr, title in ((axes[0], "inside_one_step", "one step (W)"), (axes[1], "inside_t_steps", "T steps (W^T)")):
        for i, variant in enumerate(variants):
            values = [getattr(r, attr)[variant] for r in results]
            ax.bar(
                x + (i - (len(variants) - 1) / 2) * width,
                values,
                width,
                label=f"{LABELS[variant]} (mean {np.mean(values):.3f})",
            )
        ax.set_xticks(x, [r.name for r in results], rotation=30)
        ax.set_ylim(0, 1)
        ax.set_ylabel("pooling weight inside own object")
        ax.set_title(f"mOSD Kinect clouds: {title}")
        ax.legend(fontsize=7, loc="lower right")
        ax.grid(axis="y", alpha=0.3)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def confusion_maps(confusion: dict[str, dict[str, dict[str, float]]], path: Path) -> Path:
    """One heat map per variant: rows = the classes present in the scan, columns = the class
    their points were given, cells = percent of the row's points."""
    plt = _pyplot()
    variants = list(confusion)
    fig, axes = plt.subplots(
        1, len(variants), figsize=(6.5 * len(variants), 6.5), constrained_layout=True, squeeze=False
    )
    for ax, variant in zip(axes[0], variants):
        rows = list(confusion[variant])
        grid = np.array([[confusion[variant][r].get(c, 0.0) for c in CLASS_NAMES] for r in rows])
        image = ax.imshow(grid, vmin=0, vmax=100, cmap="viridis", aspect="auto")
        ax.set_xticks(np.arange(len(CLASS_NAMES)), CLASS_NAMES, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(np.arange(len(rows)), rows, fontsize=8)
        for i, row in enumerate(grid):
            for j, value in enumerate(row):
                if value >= 10:
                    ax.text(
                        j,
                        i,
                        f"{value:.0f}",
                        ha="center",
                        va="center",
                        fontsize=6,
                        color="black" if value > 60 else "white",
                    )
        ax.set_xlabel("given class")
        ax.set_ylabel("true class")
        ax.set_title(LABELS[variant], fontsize=9)
    fig.colorbar(image, ax=axes[0].tolist(), label="% of the true class's points", shrink=0.8)
    fig.suptitle("ScanNet scene0000_00: where each class's points go")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
