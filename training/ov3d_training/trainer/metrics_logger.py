"""Where the curves go: a CSV (the record), TensorBoard (to watch), and a PNG plot (for the docs).

``metrics.csv`` is long-format -- ``step,split,name,value,wall_time`` -- so validation metrics
and new loss terms need no schema. On resume, rows past the resumed step (logged after the
checkpoint, about to be recomputed) are dropped and TensorBoard purges them too, so the record
of a resumed run is the record of an uninterrupted one.
"""

from __future__ import annotations

import csv
import math
import os
import time
from collections import defaultdict
from pathlib import Path

CSV_NAME = "metrics.csv"
PLOT_NAME = "curves.png"
_FIELDS = ("step", "split", "name", "value", "wall_time")


class MetricsLogger:
    """Rank-0 logger: CSV + TensorBoard. ``resume_step``: rows after it are discarded."""

    def __init__(self, run_dir: Path, resume_step: int | None = None, tensorboard: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.csv_path = self.run_dir / CSV_NAME
        if resume_step is None:
            self._write_rows([], mode="w")
        else:
            self._truncate_after(resume_step)
        self._writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            purge = None if resume_step is None else resume_step + 1
            self._writer = SummaryWriter(log_dir=str(self.run_dir / "tensorboard"), purge_step=purge)

    def log(self, step: int, split: str, metrics: dict[str, float]) -> None:
        now = time.time()
        rows = [(step, split, name, float(value), now) for name, value in sorted(metrics.items())]
        self._write_rows(rows, mode="a")
        if self._writer is not None:
            for name, value in metrics.items():
                self._writer.add_scalar(f"{split}/{name}", float(value), step)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()
            self._writer = None

    def _write_rows(self, rows: list[tuple], mode: str) -> None:
        new = mode == "w" or not self.csv_path.exists()
        with open(self.csv_path, "w" if new else "a", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            if new:
                writer.writerow(_FIELDS)
            writer.writerows(rows)

    def _truncate_after(self, step: int) -> None:
        if not self.csv_path.exists():
            self._write_rows([], mode="w")
            return
        kept = [row for row in read_metrics_rows(self.csv_path) if int(row["step"]) <= step]
        tmp = self.csv_path.with_suffix(".csv.tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=_FIELDS)
            writer.writeheader()
            writer.writerows(kept)
        os.replace(tmp, self.csv_path)


def read_metrics_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def read_curves(path: Path) -> dict[str, dict[str, tuple[list[int], list[float]]]]:
    """metrics.csv -> {split: {name: (steps, values)}}."""
    curves: dict[str, dict[str, tuple[list[int], list[float]]]] = defaultdict(dict)
    for row in read_metrics_rows(path):
        steps, values = curves[row["split"]].setdefault(row["name"], ([], []))
        steps.append(int(row["step"]))
        values.append(float(row["value"]))
    return curves


def plot_curves(csv_path: Path, out_path: Path, title: str = "") -> Path:
    """One panel per training loss term / accuracy and per validation metric, written as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = read_curves(csv_path)
    panels = [(split, n) for split in ("train", "val") for n in sorted(curves.get(split, {})) if not _bookkeeping(n)]
    if not panels:
        panels = [("train", "loss")]
    cols = min(4, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    for ax, (split, name) in zip(axes.flat, panels):
        steps, values = curves.get(split, {}).get(name, ([], []))
        ax.plot(
            steps, values, lw=0.8, alpha=0.45 if split == "train" else 1.0, marker=None if split == "train" else "o"
        )
        if split == "train" and len(values) >= 10:
            center, smooth = _rolling_mean(steps, values, max(3, len(values) // 15))
            ax.plot(center, smooth, lw=1.5)
        ax.set_title(f"{split}/{name}", fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out_path = Path(out_path)
    tmp = out_path.with_name(out_path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, out_path)
    return out_path


def _bookkeeping(name: str) -> bool:
    """Logged for the record, not worth a panel: learning rate, timings, epoch, fractions."""
    return name.startswith(("lr", "sec_per", "epoch", "frac_")) or name.endswith("seconds")


def _rolling_mean(steps: list[int], values: list[float], window: int) -> tuple[list[float], list[float]]:
    """Centred moving average (no lag, unlike an EMA), plotted at the window centres."""
    import numpy as np

    kernel = np.ones(window) / window
    smooth = np.convolve(np.asarray(values, dtype=float), kernel, mode="valid")
    center = np.convolve(np.asarray(steps, dtype=float), kernel, mode="valid")
    return center.tolist(), smooth.tolist()
