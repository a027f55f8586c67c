"""The teacher on the real ScanNet scan: open-vocabulary segmentation with the class names as queries.

Protocol (OpenScene / MPEC / RegionPLC, see ``../shared/data/README.md``; metrics and class list
from ``ov3d_ros.eval``): the 20 ScanNet class names are encoded by the frozen text encoder; each
point takes the class whose embedding is most similar (cosine) to the teacher's text-space feature
of its voxel. NYU40 ids outside ScanNet-20 are ignored. mIoU / mAcc are over the classes present
in the scan; the foreground f-mIoU / f-mAcc drop wall, floor and other furniture from both the
candidates and the ground truth.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ov3d_ros.core.features import input_features
from ov3d_ros.core.voxel import voxelize
from ov3d_ros.eval.metrics import evaluate, restrict_classes
from ov3d_ros.eval.scannet20 import CLASS_NAMES, FOREGROUND_EXCLUDED, nyu40_to_class_index

from ..data.scene import TrainingScene
from .losses import retrieval_accuracy
from .model import MPECModel


def scannet20_names() -> list[str]:
    return list(CLASS_NAMES)


@dataclass
class EvaluationScan:
    points: np.ndarray
    colors: np.ndarray
    target: np.ndarray  # (N,) ScanNet-20 class index, -1 = ignored
    source: str


def load_evaluation_scan(path: str | Path) -> EvaluationScan:
    from ov3d_ros.io.files import load_scan

    scan = load_scan(path)
    if scan.labels is None or scan.colors is None:
        raise ValueError(f"{path}: the evaluation scan needs colours and NYU40 labels")
    return EvaluationScan(scan.points, scan.colors, nyu40_to_class_index(scan.labels), str(path))


@torch.no_grad()
def teacher_text_features(
    model: MPECModel,
    points: np.ndarray,
    colors: np.ndarray,
    voxel_size: float,
    device: torch.device,
    max_voxels: int | None = None,
) -> tuple[torch.Tensor, np.ndarray]:
    """(V, D) unit text-space features per voxel and the (N,) point -> voxel map."""
    voxels = voxelize(points, voxel_size, colors=colors, max_voxels=max_voxels)
    feats = torch.from_numpy(input_features(voxels, model.config.input_features)).to(device)
    coords = torch.from_numpy(voxels.coords).to(device)
    with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
        encoded = model.encode(coords, feats, torch.zeros(len(coords), dtype=torch.long, device=device))
        text = model.text_features(encoded)
    return F.normalize(text.float(), dim=1), voxels.point_to_voxel


def evaluate_teacher(
    model: MPECModel,
    scan: EvaluationScan,
    class_embeddings: np.ndarray,
    voxel_size: float,
    device: torch.device,
    max_voxels: int | None = None,
) -> dict[str, float]:
    """mIoU, mAcc, f-mIoU, f-mAcc (in %) and seconds of the teacher on ``scan`` (module doc)."""
    started = time.perf_counter()
    was_training = model.training
    model.eval()
    try:
        features, point_to_voxel = teacher_text_features(
            model, scan.points, scan.colors, voxel_size, device, max_voxels
        )
    finally:
        model.train(was_training)
    text = torch.from_numpy(np.ascontiguousarray(class_embeddings, np.float32)).to(device)
    logits = (features @ F.normalize(text, dim=1).T).cpu().numpy()[point_to_voxel]  # (N, 20)
    prediction = logits.argmax(axis=1)
    overall = evaluate(scan.target, prediction, CLASS_NAMES)
    fg_target, fg_names = restrict_classes(scan.target, CLASS_NAMES, FOREGROUND_EXCLUDED)
    fg_columns = [CLASS_NAMES.index(name) for name in fg_names]
    foreground = evaluate(fg_target, logits[:, fg_columns].argmax(axis=1), fg_names)
    return {
        "miou": 100.0 * overall.miou,
        "macc": 100.0 * overall.macc,
        "f_miou": 100.0 * foreground.miou,
        "f_macc": 100.0 * foreground.macc,
        "seconds": time.perf_counter() - started,
    }


@torch.no_grad()
def retrieval_on_scenes(
    model: MPECModel,
    scenes: list[TrainingScene],
    voxel_size: float,
    device: torch.device,
    max_voxels: int | None = None,
) -> dict[str, float]:
    """Entity <-> text top-1 retrieval on whole scenes, no augmentation, no masks (the model in eval
    mode). Entities are embedded as the mean VL-adapter output of their points. Means over scenes."""
    t2e_all, e2t_all = [], []
    was_training = model.training
    model.eval()
    try:
        for scene in scenes:
            if not scene.has_language:
                continue
            voxels = voxelize(
                scene.points, voxel_size, colors=scene.colors, normals=scene.normals, max_voxels=max_voxels
            )
            feats = torch.from_numpy(input_features(voxels, model.config.input_features)).to(device)
            coords = torch.from_numpy(voxels.coords).to(device)
            with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
                encoded = model.encode(coords, feats, torch.zeros(len(coords), dtype=torch.long, device=device))
                text_space = model.text_features(encoded).float()
            num_entities = int(scene.entity.max()) + 1
            match = np.zeros((len(scene.texts), num_entities), dtype=bool)
            match[scene.match_text, scene.match_entity] = True
            named = np.flatnonzero(match.any(axis=0))
            slot = np.full(num_entities, -1, np.int64)
            slot[named] = np.arange(len(named))
            point_slot = slot[scene.entity]
            keep = point_slot >= 0
            voxel_of_point = torch.from_numpy(voxels.point_to_voxel[keep]).to(device)
            index = torch.from_numpy(point_slot[keep]).to(device)
            sums = text_space.new_zeros((len(named), text_space.shape[1])).index_add_(
                0, index, text_space[voxel_of_point]
            )
            entity_embeddings = sums / torch.bincount(index, minlength=len(named)).clamp(min=1)[:, None]
            texts = torch.from_numpy(scene.text_embeddings).to(device)
            t2e, e2t = retrieval_accuracy(entity_embeddings, texts, torch.from_numpy(match[:, named]).to(device))
            t2e_all.append(t2e)
            e2t_all.append(e2t)
    finally:
        model.train(was_training)
    if not t2e_all:
        return {}
    return {"retrieval_t2e": 100.0 * float(np.mean(t2e_all)), "retrieval_e2t": 100.0 * float(np.nanmean(e2t_all))}
