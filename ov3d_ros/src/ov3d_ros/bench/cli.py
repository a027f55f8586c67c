"""``ov3d-bench``: speed and memory of the inference core on a real scan, as one JSON object.

    ov3d-bench --json [--checkpoint CKPT] [--device auto] [--repeats 5] [--no-reference]

The pipeline figures run on the real ScanNet scene (``../shared/data/scannet/scene0000_00.npz``,
81,369 points) brought to exactly 100,000 points: every real point is kept and 18,631 more are
added at the midpoint between a randomly chosen point (fixed seed) and its nearest neighbour,
with the mean of their colours -- more samples of the same surfaces, as a denser sensor would
give, never points floating off them.

Keys (seconds unless named otherwise; medians over ``--repeats`` runs after one warm-up):

* ``end_to_end_100k_s``: ``Segmenter.process`` + ``Segmenter.query`` ("chair; table", text
  cached as for a standing query): voxelise, input features, network, kNN + affinity weights,
  logit scoring + GGP, per-point labels, objects. ``end_to_end_stages_s``: per-stage medians.
* ``requery_100k_s``: ``Segmenter.query`` with a query never seen before (text encoded, cache
  miss) on the processed cloud; ``requery_cached_100k_s``: the same query again.
* ``end_to_end_cpu_s`` / ``requery_cpu_s``: the same runs in CPU seconds (all threads of the
  process): on a shared machine wall time swings with other people's load, CPU time much less.
* ``peak_rss_mb``: peak resident memory of the process after the pipeline runs (model, MiniLM,
  100k-point cloud; before the GGP reference, which is not part of the pipeline).
* ``cuda_peak_memory_mib`` (CUDA only): the most GPU memory torch's allocator held during the
  pipeline runs (``torch.cuda.max_memory_allocated``).
* ``ggp``: from ``ov3d_ros.bench.ggp_bench``, at the GGP setting this segmenter runs ("shipped")
  and at GeoPurify's (``GGPConfig.paper()``). ``ggp_speedup_vs_reference_paper`` and
  ``ggp_speedup_vs_reference_shipped`` (copied from it): GeoPurify's own formulation of the
  pooling (brute-force float32 kNN, COO ``torch.sparse.mm`` over 512 + 6 channels) against this
  package's fast path at each setting, same thread count, best of 3 each.
* ``pointcloud2``: from ``ov3d_ros.bench.pointcloud2_bench`` (decode / encode of 300k points).
* ``weights``: "trained" or "random-init (timing only)" -- timing does not depend on the
  weights' values, but a random-init model's labels mean nothing and are not reported.
* ``device``, ``torch_threads``, ``cpu_count``, ``load_average`` (1-minute, before and after:
  the CI machine is shared, and a loaded machine's timings are not an idle machine's).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ov3d_ros.checkout import shared_data
from ov3d_ros.core.checkpoint import CheckpointMetadata, TextSpace
from ov3d_ros.core.network import StudentConfig, StudentNet
from ov3d_ros.core.segmenter import DEFAULT_CHECKPOINT, Segmenter, SegmenterConfig
from ov3d_ros.core.text import MINILM_DIM, MINILM_ID, load_text_encoder
from ov3d_ros.core.types import QuerySet
from ov3d_ros.io.scan import Scan

DEFAULT_SCAN = shared_data() / "scannet" / "scene0000_00.npz"
TARGET_POINTS = 100_000
STANDING_QUERY = "chair; table"
NEW_QUERIES = (
    "sofa",
    "red mug; trash can",
    "bookshelf",
    "kitchen counter",
    "pillow; blanket",
    "floor lamp",
    "television",
    "office chair; desk",
    "window curtain",
    "picture frame",
)
TARGETS_CPU = {"end_to_end_100k_s": 1.0, "requery_100k_s": 0.05, "peak_rss_mb": 3072}
TARGETS_CUDA = {"end_to_end_100k_s": 0.04}


def densify_to(points: np.ndarray, colors: np.ndarray, target: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Keep every point; add midpoints towards nearest neighbours until there are ``target``."""
    extra = target - len(points)
    if extra <= 0:
        return points[:target], colors[:target]
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(points), size=extra, replace=extra > len(points))
    _, nearest = cKDTree(points).query(points[chosen], k=2)
    partner = nearest[:, 1]
    mid = (points[chosen] + points[partner]) / 2
    mid_colors = ((colors[chosen].astype(np.uint16) + colors[partner]) // 2).astype(np.uint8)
    return np.concatenate([points, mid]).astype(np.float32), np.concatenate([colors, mid_colors])


def build_segmenter(checkpoint: str | None, device: str, threads: int | None) -> tuple[Segmenter, str]:
    """The trained model when there is one; otherwise a random-init student (timing only)."""
    config = SegmenterConfig(device=device, num_threads=threads)
    path = Path(checkpoint) if checkpoint else DEFAULT_CHECKPOINT
    if checkpoint or (path / "model.json").is_file():
        segmenter = Segmenter.from_checkpoint(path, device=device, config=config)
        return segmenter, "trained"
    torch.manual_seed(0)
    model = StudentNet(StudentConfig())
    metadata = CheckpointMetadata(
        architecture=model.config,
        text_space=TextSpace(MINILM_ID, MINILM_DIM),
        trained=False,
        training_data="none: random initialisation, for timing only",
    )
    segmenter = Segmenter(model, metadata, load_text_encoder(MINILM_ID), config, allow_untrained=True)
    return segmenter, "random-init (timing only)"


def pipeline_bench(segmenter: Segmenter, scan: Scan, repeats: int) -> dict[str, Any]:
    standing = QuerySet.parse(STANDING_QUERY)
    processed = segmenter.process(scan)  # warm-up: allocator, kernels, text of the standing query
    segmenter.query(processed, standing)

    totals, cpu_totals, stages = [], [], []
    for _ in range(repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        processed = segmenter.process(scan)
        result = segmenter.query(processed, standing)
        totals.append(time.perf_counter() - start)
        cpu_totals.append(time.process_time() - cpu_start)
        stages.append(
            {
                **{f"process.{k}": v for k, v in processed.timings.items()},
                **{f"query.{k}": v for k, v in result.timings.items()},
            }
        )

    fresh, fresh_cpu, fresh_stages, cached = [], [], [], []
    for text in NEW_QUERIES[: max(repeats, 3)]:
        start, cpu_start = time.perf_counter(), time.process_time()
        result = segmenter.query(processed, text)
        fresh.append(time.perf_counter() - start)
        fresh_cpu.append(time.process_time() - cpu_start)
        fresh_stages.append(result.timings)
        start = time.perf_counter()
        segmenter.query(processed, text)
        cached.append(time.perf_counter() - start)

    def medians(rows: list[dict[str, float]]) -> dict[str, float]:
        return {key: round(statistics.median(row[key] for row in rows if key in row), 4) for key in rows[0]}

    return {
        "num_points": len(scan),
        "num_voxels": processed.num_voxels,
        "end_to_end_100k_s": round(statistics.median(totals), 4),
        "end_to_end_min_s": round(min(totals), 4),
        "end_to_end_cpu_s": round(statistics.median(cpu_totals), 4),
        "end_to_end_stages_s": medians(stages),
        "requery_100k_s": round(statistics.median(fresh), 4),
        "requery_cpu_s": round(statistics.median(fresh_cpu), 4),
        "requery_stages_s": medians(fresh_stages),
        "requery_cached_100k_s": round(statistics.median(cached), 4),
        "repeats": repeats,
    }


def _optional(module: str, **kwargs) -> dict[str, Any]:
    """Run another bench module's ``run`` when it is importable; say why not otherwise."""
    import importlib

    try:
        bench = importlib.import_module(module)
    except ImportError as exc:
        return {"skipped": f"{module} not importable: {exc}"}
    return bench.run(**kwargs)


def run(
    scan_path: str | Path = DEFAULT_SCAN,
    *,
    checkpoint: str | None = None,
    device: str = "auto",
    threads: int | None = None,
    repeats: int = 5,
    reference: bool = True,
    node: bool = False,
) -> dict[str, Any]:
    from ov3d_ros.io.files import load_scan

    out: dict[str, Any] = {"load_average_before": round(os.getloadavg()[0], 2)}
    segmenter, weights = build_segmenter(checkpoint, device, threads)
    source = load_scan(scan_path)
    if source.colors is None:
        source.colors = np.full((len(source), 3), 128, np.uint8)
    points, colors = densify_to(source.points, source.colors, TARGET_POINTS)
    scan = Scan(points, colors, frame_id=source.frame_id)
    out.update(
        scan=str(scan_path),
        scan_points_real=len(source),
        densified="kept all real points; added midpoints to nearest neighbours (seed 0) up to 100,000",
        weights=weights,
        device=str(segmenter.device),
        device_name=torch.cuda.get_device_name(segmenter.device) if segmenter.device.type == "cuda" else "cpu",
        torch_threads=torch.get_num_threads(),
        cpu_count=os.cpu_count(),
        ggp=segmenter.config.ggp.record(),
    )
    if segmenter.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(segmenter.device)
    out.update(pipeline_bench(segmenter, scan, repeats))
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    if segmenter.device.type == "cuda":
        out["cuda_peak_memory_mib"] = round(torch.cuda.max_memory_allocated(segmenter.device) / 2**20, 1)
    out["targets"] = TARGETS_CUDA if segmenter.device.type == "cuda" else TARGETS_CPU
    out["load_average_after_pipeline"] = round(os.getloadavg()[0], 2)

    ggp = _optional(
        "ov3d_ros.bench.ggp_bench",
        scan_path=scan_path,
        device=str(segmenter.device),
        reference=reference,
        config=segmenter.config.ggp,
    )
    out["ggp"].update(ggp)
    for key in ("ggp_speedup_vs_reference_paper", "ggp_speedup_vs_reference_shipped"):
        if key in ggp:
            out[key] = ggp[key]
    out["pointcloud2"] = _optional("ov3d_ros.bench.pointcloud2_bench")
    if node:  # publish -> labelled cloud round trip over real rclpy (needs ROS; slower)
        out["node"] = _optional("ov3d_ros.bench.node_bench", device=device)
    out["load_average_after"] = round(os.getloadavg()[0], 2)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ov3d-bench",
        description=__doc__.split("\n\n")[0],
        epilog="GGP against GeoPurify's own formulation of it (brute-force float32 kNN, COO torch.sparse.mm over "
        "512 + 6 channels): ggp_speedup_vs_reference_paper and ggp_speedup_vs_reference_shipped, with the "
        "timings and checks under ggp.reference_* and ggp.optimized_* (keys: ov3d_ros.bench.ggp_bench).",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object (default: indented JSON)")
    parser.add_argument("--scan", default=str(DEFAULT_SCAN), help="real scan to time on (default: the ScanNet scene)")
    parser.add_argument(
        "--checkpoint", default=None, help="checkpoint directory (default: packaged model, else random init)"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-reference", action="store_true", help="skip the slow GeoPurify-formulation GGP reference")
    parser.add_argument("--node", action="store_true", help="also time the ROS round trip (publish -> labelled cloud)")
    args = parser.parse_args(argv)
    if not Path(args.scan).is_file():
        print(f"ov3d-bench: scan not found: {args.scan} (set --scan)", file=sys.stderr)
        return 2
    result = run(
        args.scan,
        checkpoint=args.checkpoint,
        device=args.device,
        threads=args.threads,
        repeats=max(1, args.repeats),
        reference=not args.no_reference,
        node=args.node,
    )
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
