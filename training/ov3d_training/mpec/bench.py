"""Timings of the MPEC pipeline (dicts, printed as JSON by the callers; no timed tests).

* :func:`overseg` -- the unsupervised over-segmentation on a real scan of ``num_points`` points
  (the ScanNet scene in ``../shared/data``, densified with midpoints to the requested size:
  more samples of the same surfaces). Keys: ``normals_s``, ``graph_s`` (kNN + weights),
  ``felzenszwalb_s``, ``total_s``, ``segments``, ``points``.
* :func:`train_step` -- seconds per training step of a recipe on given training data:
  ``prepare_s`` (one-time scene preparation), ``item_s`` (one item: crop, masks, two augmented
  views, voxelisation), ``step_s`` (forward + backward + AdamW on one batch, mean over ``steps``
  after one warm-up step), ``voxels_per_view``, ``parameters``, ``device``, ``threads``.

Run: ``python -m ov3d_training.mpec.bench overseg`` or
``python -m ov3d_training.mpec.bench step --data RECORDING [--config FILE.yaml]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.overseg import OversegConfig, estimate_normals, felzenszwalb_graph, knn_graph
from ..data.sources import evaluation_dir

REPO_CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _densify(
    points: np.ndarray, colors: np.ndarray, target: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    from scipy.spatial import cKDTree

    if len(points) >= target:
        keep = rng.choice(len(points), target, replace=False)
        return points[keep], colors[keep]
    extra = target - len(points)
    _, nn = cKDTree(points).query(points, k=4)
    src = rng.integers(0, len(points), extra)
    dst = nn[src, rng.integers(1, 4, extra)]
    mid = 0.5 * (points[src] + points[dst])
    return np.concatenate([points, mid]), np.concatenate([colors, colors[src]])


def overseg(scan_path: str | Path | None = None, num_points: int = 100_000, seed: int = 0) -> dict[str, Any]:
    from scipy.spatial import cKDTree

    from ov3d_ros.io.files import load_scan

    scan = load_scan(scan_path or evaluation_dir() / "scene0000_00.npz")
    points, colors = _densify(scan.points.astype(np.float64), scan.colors, num_points, np.random.default_rng(seed))
    config = OversegConfig()
    t0 = time.perf_counter()
    tree = cKDTree(points)
    normals = estimate_normals(points, config.k_normals, tree)
    t1 = time.perf_counter()
    a, b = knn_graph(points, config.k_graph, config.max_edge_length, tree)
    weight = config.normal_weight * (1.0 - np.abs(np.einsum("ij,ij->i", normals[a], normals[b])))
    rgb = colors.astype(np.float64) / 255.0
    weight += config.color_weight * np.linalg.norm(rgb[a] - rgb[b], axis=1) / np.sqrt(3.0)
    t2 = time.perf_counter()
    labels = felzenszwalb_graph(len(points), a, b, weight, config.threshold, config.min_size, config.max_rounds)
    t3 = time.perf_counter()
    return {
        "points": len(points),
        "edges": len(a),
        "normals_s": round(t1 - t0, 4),
        "graph_s": round(t2 - t1, 4),
        "felzenszwalb_s": round(t3 - t2, 4),
        "total_s": round(t3 - t0, 4),
        "segments": len(np.unique(labels)),
    }


def train_step(
    data: list[str | Path],
    config_path: str | Path = REPO_CONFIGS / "mpec_default.yaml",
    *,
    steps: int = 3,
    batch_size: int | None = None,
    device: str = "auto",
    overrides: list[str] = (),
) -> dict[str, Any]:
    from ov3d_ros.core.network import set_conv_algorithm

    from ..cli import _apply_overrides
    from ..data.dataset import MPECDataset, collate_items
    from ..mpec.config import MPECConfig
    from ..mpec.task import MPECTask
    from ..trainer.config import from_dict, load_yaml
    from ..trainer.distributed import DistInfo
    from ..trainer.loop import parameter_groups

    config = from_dict(MPECConfig, _apply_overrides(load_yaml(config_path), list(overrides)))
    if config.trainer.cpu_threads:
        torch.set_num_threads(config.trainer.cpu_threads)
    dev = torch.device(
        "cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device)
    )
    batch = batch_size or config.trainer.batch_size
    task = MPECTask(config, [str(d) for d in data])
    with tempfile.TemporaryDirectory() as tmp:
        config.data.cache_dir = config.data.cache_dir or str(Path(tmp) / "cache")
        config.validation.enabled = False
        t0 = time.perf_counter()
        task.prepare(DistInfo(device=dev), Path(tmp))
        prepare_s = time.perf_counter() - t0
        dataset: MPECDataset = task.train_dataset()
        t0 = time.perf_counter()
        items = [dataset[(0, i % len(dataset))] for i in range(batch)]
        item_s = (time.perf_counter() - t0) / batch
        model = set_conv_algorithm(task.build_model().to(dev), dev)
        optimizer = torch.optim.AdamW(parameter_groups(model, config.optim.weight_decay), lr=config.optim.lr)
        use_amp = config.trainer.amp and dev.type == "cuda"
        scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
        times = []
        for step in range(steps + 1):
            batch_items = collate_items(items).to(dev)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            with torch.autocast(dev.type, dtype=torch.float16, enabled=use_amp):
                loss, _ = model(batch_items)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            if dev.type == "cuda":
                torch.cuda.synchronize()
            if step > 0:  # the first step pays for allocator and kernel warm-up
                times.append(time.perf_counter() - t0)
        result = {
            "recipe": str(config_path),
            "device": str(dev) if dev.type == "cpu" else torch.cuda.get_device_name(dev),
            "threads": torch.get_num_threads(),
            "batch_size": batch,
            "scenes": len(dataset),
            "points_per_scan": [len(item.entity) for item in items],
            "voxels_per_view": [len(v.coords) for item in items for v in item.views],
            "parameters": int(sum(p.numel() for p in model.parameters())),
            "prepare_s": round(prepare_s, 3),
            "item_s": round(item_s, 4),
            "step_s": round(float(np.mean(times)), 4),
            "step_s_all": [round(t, 4) for t in times],
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }
        if dev.type == "cuda":
            result["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated(dev) / 2**20, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ov3d_training.mpec.bench", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    o = sub.add_parser("overseg")
    o.add_argument("--points", type=int, default=100_000)
    o.add_argument("--scan", type=Path, default=None)
    s = sub.add_parser("step")
    s.add_argument("--data", nargs="+", required=True)
    s.add_argument("--config", type=Path, default=REPO_CONFIGS / "mpec_default.yaml")
    s.add_argument("--steps", type=int, default=3)
    s.add_argument("--batch-size", type=int, default=None)
    s.add_argument("--device", default="auto")
    s.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args(argv)
    if args.what == "overseg":
        result = overseg(args.scan, args.points)
    else:
        result = train_step(
            args.data,
            args.config,
            steps=args.steps,
            batch_size=args.batch_size,
            device=args.device,
            overrides=args.overrides,
        )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
