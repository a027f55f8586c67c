"""Seconds per distillation step of the default recipe on one ~50k-voxel scan, by stage.

    python -m ov3d_training.distill.bench [--voxels 50000] [--device cpu] [--steps 3] [--threads N]

The scan is the real ScanNet scene (``../shared/data/scannet/scene0000_00.npz``) at the teacher's
voxel size (2 cm), one point per voxel, ball-cropped to ``num_voxels`` around its centre (a
spatial crop keeps the real surface density; a random subset would thin it); a synthetic room
when the shared data is absent. Timing only -- it is never trained on. Teacher (the default MPEC
architecture) and student (the inference default) have random weights: speed does not depend on
their values.

Keys (seconds; medians over ``steps`` after one warm-up step):

* ``data_item_s``: one training item -- crop, augmentation (elastic distortion included),
  voxelisation, input features, anchor neighbours. Runs in the loader workers, in parallel with
  the step, so it bounds throughput only when ``data_item_s * batch / num_workers`` exceeds the step.
* ``teacher_s``: the frozen teacher's forward pass; ``teacher_cache_load_s``: loading the same
  features from the float16 disk cache instead (only used when ``data.augment`` is null).
* ``student_forward_loss_s``: student forward on every voxel + pair mining + InfoNCE + cosine.
* ``backward_s``, ``optimizer_s``: backward pass; gradient clipping + AdamW step.
* ``step_s``: teacher + forward/loss + backward + optimiser: the training process's time per
  scan; ``step_cached_teacher_s``: the same with the teacher's features from the cache.
* ``num_voxels``, ``anchors``, ``device``, ``torch_threads``, ``cpu_count``, ``load_average``
  (1-minute, before and after: the CI machine is shared, and a loaded machine's timings are not an
  idle one's), ``weights``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ov3d_ros.checkout import shared_data
from ov3d_ros.core.checkpoint import TextSpace
from ov3d_ros.core.network import StudentNet, set_conv_algorithm
from ov3d_ros.core.voxel import voxelize

from ..mpec.export import TeacherMetadata
from ..mpec.model import MPECModel, MPECModelConfig
from ..trainer.loop import parameter_groups
from .config import DistillConfig
from .dataset import DistillDataset, collate_items
from .objective import DistillationObjective, batch_sparse_tensor
from .scenes import DistillScene
from .teacher import FrozenTeacher, TeacherFeatureCache

DEFAULT_SCAN = shared_data() / "scannet" / "scene0000_00.npz"
TEXT_DIM = 384


def bench_scene(num_voxels: int, voxel_size: float, scan_path: Path = DEFAULT_SCAN) -> tuple[DistillScene, str]:
    """One point per voxel, ball-cropped to ``num_voxels`` (module doc)."""
    if scan_path.is_file():
        data = np.load(scan_path)
        points, colors, source = (
            data["xyz"].astype(np.float32),
            data["rgb"].astype(np.uint8),
            "scannet scene0000_00 (ball crop)",
        )
    else:
        rng = np.random.default_rng(0)
        side = int(np.ceil(np.sqrt(num_voxels * 1.3))) * voxel_size
        u = rng.random((num_voxels * 6, 2)).astype(np.float32) * side
        wall = rng.random(len(u)) < 0.3
        points = np.where(wall[:, None], np.c_[u[:, 0], np.zeros(len(u)), u[:, 1] * 0.4], np.c_[u, np.zeros(len(u))])
        colors, source = rng.integers(0, 256, (len(points), 3), dtype=np.uint8), "synthetic room"
    voxels = voxelize(points, voxel_size)
    _, first = np.unique(voxels.point_to_voxel, return_index=True)
    points, colors = points[first], colors[first]
    center = np.median(points, axis=0)
    keep = np.sort(np.argsort(((points - center) ** 2).sum(axis=1))[:num_voxels])
    return DistillScene(points[keep], colors[keep], None, source), source


def run(
    num_voxels: int = 50_000,
    *,
    steps: int = 3,
    device: str = "cpu",
    threads: int | None = None,
    config: DistillConfig | None = None,
    teacher_config: MPECModelConfig | None = None,
    scan_path: Path = DEFAULT_SCAN,
) -> dict[str, Any]:
    """The module doc's keys; ``config`` / ``teacher_config`` default to the default recipe / MPEC model."""
    config = config or DistillConfig()
    dev = torch.device(device)
    if threads:
        torch.set_num_threads(int(threads))
    load_before = os.getloadavg()[0]
    teacher_config = teacher_config or MPECModelConfig()
    voxel_size = 0.02
    scene, source = bench_scene(num_voxels, voxel_size, scan_path)
    torch.manual_seed(0)
    teacher = FrozenTeacher(
        set_conv_algorithm(MPECModel(teacher_config, TEXT_DIM), dev).to(dev),
        TeacherMetadata(
            teacher_config,
            TextSpace("minilm-l6-v2", TEXT_DIM),
            voxel_size,
            teacher_config.input_features,
            trained=False,
        ),
        Path("."),
        "random-init",
    )
    objective = set_conv_algorithm(
        DistillationObjective(StudentNet(config.student.build(TEXT_DIM)), config.loss, config.pairs), dev
    ).to(dev)
    optimizer = torch.optim.AdamW(parameter_groups(objective, config.optim.weight_decay), lr=config.optim.lr)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    use_amp = config.trainer.amp and dev.type == "cuda"

    with tempfile.TemporaryDirectory() as tmp:
        scene_file = Path(tmp) / "scene.npz"
        scene.save(scene_file)
        dataset = DistillDataset(
            [scene_file],
            voxel_size,
            config.data,
            config.pairs,
            config.loss,
            config.student.input_features,
            teacher.input_features,
            seed=0,
        )
        cache = TeacherFeatureCache(Path(tmp) / "cache")
        records: dict[str, list[float]] = {
            k: []
            for k in (
                "data_item_s",
                "teacher_s",
                "teacher_cache_load_s",
                "student_forward_loss_s",
                "backward_s",
                "optimizer_s",
            )
        }
        voxels_seen, anchors = 0, 0
        for step in range(steps + 1):
            item_s, item = _timed(lambda: dataset[(step, 0)], sync)
            batch = collate_items([item]).to(dev)
            voxels_seen, anchors = item.num_voxels, len(item.anchors)
            with torch.autocast(dev.type, dtype=torch.float16, enabled=use_amp):
                teacher_s, out = _timed(
                    lambda: teacher.features(
                        batch_sparse_tensor(batch, len(teacher_config.channels)), config.pairs.teacher_space, True
                    ),
                    sync,
                )
                cache.store("scene", out)
                load_s, _ = _timed(lambda: cache.load("scene", item.num_voxels, dev), sync)
                forward_s, (loss, _) = _timed(lambda: objective(batch, out.guide, out.text), sync)
            backward_s, _ = _timed(lambda: loss.backward(), sync)

            def optimize():
                torch.nn.utils.clip_grad_norm_(objective.parameters(), config.optim.grad_clip)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)

            optimizer_s, _ = _timed(optimize, sync)
            if step == 0:
                continue  # warm-up
            for key, value in zip(records, (item_s, teacher_s, load_s, forward_s, backward_s, optimizer_s)):
                records[key].append(value)
    result: dict[str, Any] = {k: statistics.median(v) for k, v in records.items()}
    in_process = result["student_forward_loss_s"] + result["backward_s"] + result["optimizer_s"]
    result["step_s"] = result["teacher_s"] + in_process
    result["step_cached_teacher_s"] = result["teacher_cache_load_s"] + in_process
    result.update(
        num_voxels=voxels_seen,
        anchors=anchors,
        scan=source,
        device=str(dev) if dev.type == "cpu" else f"cuda ({torch.cuda.get_device_name(dev)})",
        amp=use_amp,
        torch_threads=torch.get_num_threads(),
        cpu_count=os.cpu_count(),
        load_average=[load_before, os.getloadavg()[0]],
        weights="random-init (timing only)",
    )
    return result


def _timed(fn: Callable[[], Any], sync: Callable[[], None]) -> tuple[float, Any]:
    sync()
    start = time.perf_counter()
    out = fn()
    sync()
    return time.perf_counter() - start, out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Seconds per distillation step (default recipe) on one scan.")
    parser.add_argument("--voxels", type=int, default=50_000)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    print(json.dumps(run(args.voxels, steps=args.steps, device=args.device, threads=args.threads), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
