"""Simulator speed, as one JSON object: ``python -m ov3d_training.sim.bench [--scenes 5]``.

Renders ``scenes`` scenes (seed 0, the default recording configuration) in this process, writing
the bags to a temporary folder, and reports per-scene seconds by stage (layout, render, sensor
model + fusion, bag writing), scenes per minute on one core, the projected time for 100 scenes on
all cores (from wall time, and from CPU time = an idle machine), map points and bag bytes per
scene, and the load average before and after (the CI machine is shared; a loaded machine's
timings are not an idle machine's).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from .library import ModelLibrary
from .recorder import RecordingConfig, record_scene


def bench_simulation(
    scenes: int = 5, seed: int = 0, config: RecordingConfig = RecordingConfig(), cache_dir: Path | None = None
) -> dict:
    load_before = os.getloadavg()[0]
    library = ModelLibrary.build(cache_dir)
    per_scene, cpu, stages, points, sizes = [], [], {}, [], []
    with tempfile.TemporaryDirectory() as tmp:
        for index in range(scenes):
            t, c = time.perf_counter(), time.process_time()
            rec = record_scene(library, seed, index, Path(tmp) / f"scene_{index:04d}", config)
            per_scene.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
            for k, v in rec.seconds.items():
                stages.setdefault(k, []).append(v)
            points.append(len(rec.clouds[-1]))
            sizes.append(sum(f.stat().st_size for f in rec.path.iterdir()))
    cores = os.cpu_count() or 1
    median = statistics.median(per_scene)
    return {
        "scenes": scenes,
        "config": {
            "frames": config.frames,
            "resolution": f"{config.width}x{config.height}",
            "voxel": config.voxel,
            "sensor": config.sensor,
            "storage": config.storage,
        },
        "seconds_per_scene_median": round(median, 3),
        # CPU time is what an idle machine would take; wall time includes waiting for a busy CPU
        "cpu_seconds_per_scene_median": round(statistics.median(cpu), 3),
        "stages_s_median": {k: round(statistics.median(v), 3) for k, v in stages.items()},
        "scenes_per_minute_one_core": round(60.0 / median, 2),
        "projected_100_scenes_min_all_cores": round(100 * median / cores / 60.0, 1),
        "projected_100_scenes_min_all_cores_idle": round(100 * statistics.median(cpu) / cores / 60.0, 1),
        "cpu_count": cores,
        "map_points_median": int(statistics.median(points)),
        "bag_mb_median": round(statistics.median(sizes) / 1e6, 2),
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ov3d_training.sim.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=5)
    parser.add_argument("--cache", type=Path, default=None)
    args = parser.parse_args(argv)
    print(json.dumps(bench_simulation(args.scenes, cache_dir=args.cache), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
