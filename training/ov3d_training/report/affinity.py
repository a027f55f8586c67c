"""Affinity quality on real Kinect clouds with object labels (mOSD): does pooling stay inside objects?

For a voxel i of object o, its *inside share* is the pooling weight it gives to voxels of o:
sum_j W_ij [label_j = o]. After T iterations the same question is asked of W^T, computed by
pooling the one-hot object indicator T times (GGP is linear). Means are over the voxels of
labelled objects (mOSD labels >= 10; the table parts 1-9 are neighbours to leak into, not
objects of their own). Higher is better: weight that leaks across a boundary blurs the
object's semantics with its neighbour's.

mOSD clouds are in the Kinect's optical frame (z forward, y down); the student's height input
and the data-only geometric embedding want z up, so each cloud is first rotated so that the
table plane (its support labels 1-9, fitted by PCA) is horizontal, the camera above it, and
the floor level is the table -- the robot would get this transform from tf.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ov3d_ros.core.ggp import GGPConfig, build_pooling_graph
from ov3d_ros.core.neighbors import knn_voxels
from ov3d_ros.core.segmenter import Segmenter
from ov3d_ros.io.scan import Scan

from .scannet import GGP_VARIANTS, majority_per_voxel, pooling_embeddings, variant_setting

FIRST_OBJECT_LABEL = 10  # mOSD: 1-9 table / support parts, >= 10 one object each


@dataclass
class CloudAffinity:
    name: str
    voxels: int
    objects: int
    inside_one_step: dict[str, float]  # variant -> mean inside share of W
    inside_t_steps: dict[str, float]  # variant -> mean inside share of W^T


def gravity_aligned(scan: Scan) -> Scan:
    """The cloud rotated so its table plane is horizontal with the camera (origin) above it."""
    support = scan.instances if scan.instances is not None else np.zeros(len(scan), np.int64)
    table = scan.points[(support >= 1) & (support < FIRST_OBJECT_LABEL)]
    if len(table) < 100:
        raise ValueError(f"{scan.frame_id}: too few table points ({len(table)}) to find the vertical")
    center = table.mean(axis=0)
    _, _, vt = np.linalg.svd(table - center, full_matrices=False)
    up = vt[2] if np.dot(vt[2], -center) > 0 else -vt[2]  # the camera at the origin looks down on the table
    x_axis = np.cross([0.0, 1.0, 0.0], up)
    x_axis = x_axis / np.linalg.norm(x_axis) if np.linalg.norm(x_axis) > 1e-6 else np.array([1.0, 0.0, 0.0])
    y_axis = np.cross(up, x_axis)
    rotation = np.stack([x_axis, y_axis, up])  # rows: new axes in camera coordinates
    points = ((scan.points - center) @ rotation.T).astype(np.float32)
    return Scan(points=points, colors=scan.colors, instances=scan.instances, labels=scan.labels, frame_id="table")


def cloud_affinity(
    segmenter: Segmenter,
    scan: Scan,
    name: str,
    iterations: int | None = None,
    settings: dict[str, GGPConfig] | None = None,
) -> CloudAffinity:
    """Inside shares of every pooling variant on one labelled cloud (module doc). Each variant at
    its own ``settings`` entry (its calibrated tau and T) or else the segmenter's GGP;
    ``iterations`` overrides T for all."""
    config = segmenter.config.ggp
    processed = segmenter.process(scan)
    voxels = processed.voxels
    device = segmenter.device
    point_object = np.where(scan.instances >= FIRST_OBJECT_LABEL, scan.instances, 0)
    voxel_object = majority_per_voxel(voxels.point_to_voxel, point_object, voxels.num_voxels)
    objects, voxel_slot = np.unique(voxel_object, return_inverse=True)  # slot 0 = no object when present
    indicator = torch.zeros((voxels.num_voxels, len(objects)), dtype=torch.float32, device=device)
    indicator[torch.arange(voxels.num_voxels, device=device), torch.from_numpy(voxel_slot).to(device)] = 1.0
    rows = torch.from_numpy(np.flatnonzero(voxel_object > 0)).to(device)
    own = torch.from_numpy(voxel_slot).to(device)[rows]

    centers = torch.from_numpy(voxels.centers).to(device)
    knn = knn_voxels(centers, config.k, include_self=True, cell_size=voxels.voxel_size)
    embeddings = pooling_embeddings(processed, device)
    one, many = {}, {}
    # a variant calibrated to coarse-to-fine cells is also measured on voxels (its "_voxels" entry):
    # cells wider than a small object mix it with its support, which this metric sees and ScanNet's
    # furniture-scale classes do not
    runs = [(variant, variant_setting(variant, settings, config)) for variant in GGP_VARIANTS]
    runs += [(f"{variant}_voxels", replace(setting, coarsen=1)) for variant, setting in runs if setting.coarsen > 1]
    for label, setting in runs:  # not "name": that is the cloud's
        graph = build_pooling_graph(
            centers,
            embeddings[label.removesuffix("_voxels")],
            setting,
            device=device,
            cell_size=voxels.voxel_size,
            knn=knn if setting.k == config.k and setting.coarsen == 1 else None,
        )
        passes = setting.iterations if iterations is None else iterations
        after_one = graph.pool(indicator, 1)
        after_t = graph.pool(after_one, passes - 1) if passes > 1 else after_one
        one[label] = float(after_one[rows, own].mean())
        many[label] = float(after_t[rows, own].mean())
    return CloudAffinity(name, voxels.num_voxels, int((objects > 0).sum()), one, many)


def mosd_affinity(
    segmenter: Segmenter, files: list[Path], settings: dict[str, GGPConfig] | None = None
) -> list[CloudAffinity]:
    from ov3d_ros.io.files import load_scan

    results = []
    for path in files:
        scan = gravity_aligned(load_scan(path))
        # every variant at its own tau but the same T (the node's): the shares compare like for like
        results.append(cloud_affinity(segmenter, scan, Path(path).stem, segmenter.config.ggp.iterations, settings))
    return results
