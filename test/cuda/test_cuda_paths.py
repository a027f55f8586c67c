"""CUDA against CPU on the real ScanNet scan: spconv implicit GEMM vs Native, fp16 autocast vs fp32,
grid-hash kNN vs the k-d tree (ties: neighbors' rule), GGP on the device vs the CPU, the Segmenter
end to end, and a few MPEC and distillation steps with AMP. Tolerances are stated per test."""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ov3d_ros.core.ggp import GGPConfig, build_pooling_graph
from ov3d_ros.core.neighbors import knn_voxels
from ov3d_ros.core.network import set_conv_algorithm
from ov3d_ros.core.segmenter import Segmenter, SegmenterConfig
from ov3d_ros.core.types import QuerySet
from ov3d_ros.core.voxel import voxelize
from ov3d_ros.eval.scannet20 import CLASS_NAMES
from ov3d_ros.io.files import load_scan

pytestmark = pytest.mark.cuda
REPO = Path(__file__).resolve().parents[2]
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def scan(scannet_npz):
    return load_scan(scannet_npz)


def _segmenter(device: torch.device, **config) -> Segmenter:
    return Segmenter.from_checkpoint(None, device=str(device), config=SegmenterConfig(device=str(device), **config))


def _features(segmenter: Segmenter, scan) -> tuple[torch.Tensor, torch.Tensor]:
    """Unpooled unit semantic features and affinity embeddings per voxel, on the CPU, float32."""
    processed = segmenter.process(scan)
    semantic = segmenter.pooled_features(processed, pooling=False)
    return semantic.float().cpu(), processed.affinity.float().cpu()


def _row_cosines(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(a, b, dim=1)


def test_implicit_gemm_equals_native_on_the_real_scan(device, scan):
    segmenter = _segmenter(device, fp16=False, pooling=False)
    algos = {m.algo.name for m in segmenter.model.modules() if hasattr(m, "algo")}
    assert algos == ({"MaskImplicitGemm"} if device.type == "cuda" else {"Native"})
    gemm_sem, gemm_aff = _features(segmenter, scan)
    set_conv_algorithm(segmenter.model, "cpu")  # Native kernels, on the same device
    native_sem, native_aff = _features(segmenter, scan)
    # fp32 both ways; only the summation order differs: cosines >= 0.9999 per voxel, 1e-3 absolute
    assert _row_cosines(gemm_sem, native_sem).min() > 0.9999
    assert _row_cosines(gemm_aff, native_aff).min() > 0.9999
    assert (gemm_aff - native_aff).abs().max() < 1e-3


def test_fp16_autocast_matches_fp32(device, scan):
    half_sem, half_aff = _features(_segmenter(device, fp16=True, pooling=False), scan)
    full_sem, full_aff = _features(_segmenter(device, fp16=False, pooling=False), scan)
    cos = _row_cosines(half_sem, full_sem)
    assert cos.mean() > 0.999 and cos.min() > 0.99  # fp16: per-voxel cosine to fp32
    assert _row_cosines(half_aff, full_aff).mean() > 0.999
    # the class each voxel is nearest to among the ScanNet-20 names: the same for >= 99 % of voxels
    text = torch.from_numpy(_segmenter(CPU, pooling=False).text_encoder.encode(list(CLASS_NAMES)))
    agree = ((half_sem @ text.T).argmax(1) == (full_sem @ text.T).argmax(1)).float().mean()
    assert agree >= 0.99, f"fp16 vs fp32 nearest class agree on {agree:.4f} of voxels"


@pytest.mark.parametrize("k", [16, 32])
def test_grid_knn_on_the_device_equals_the_kdtree_and_the_cpu_grid(device, scan, k):
    voxels = voxelize(scan.points, 0.05)
    centers = torch.from_numpy(voxels.centers)
    grid = knn_voxels(centers.to(device), k, method="grid", cell_size=0.05)  # what "auto" uses on CUDA
    grid_cpu = knn_voxels(centers, k, method="grid", cell_size=0.05)
    tree = knn_voxels(voxels.centers, k, method="kdtree")
    # the tie rule makes the grid search device-independent: identical indices
    np.testing.assert_array_equal(grid.indices.cpu().numpy(), grid_cpu.indices.numpy())
    # the k-d tree: same distances (within the rule's near-tie tolerance); the same set of neighbours
    # for all but the voxels where near-equidistant ones share the k-th place (< 0.5 %)
    np.testing.assert_allclose(grid.distances.cpu().numpy(), tree.distances, atol=1e-4)
    same_set = (np.sort(grid.indices.cpu().numpy(), 1) == np.sort(tree.indices, 1)).all(1)
    assert same_set.mean() > 0.995


def test_grid_knn_ties_resolve_to_the_lower_index_on_the_device(device):
    cube = np.stack(np.meshgrid(*[np.arange(8)] * 3, indexing="ij"), -1).reshape(-1, 3)
    perm = np.random.default_rng(0).permutation(len(cube))
    centers = torch.from_numpy(((cube[perm] + 0.5) * 0.05 + 1.7).astype(np.float32))
    for k in (5, 11, 21):  # each cuts through a group of equally far voxels
        on_device = knn_voxels(centers.to(device), k, method="grid", cell_size=0.05)
        brute = knn_voxels(centers, k, method="brute", cell_size=0.05)  # the rule, by full distances
        np.testing.assert_array_equal(on_device.indices.cpu().numpy(), brute.indices.numpy())


def test_ggp_on_the_device_equals_the_cpu(device, scan):
    segmenter = _segmenter(CPU, pooling=False)
    processed = segmenter.process(scan)
    centers = torch.from_numpy(processed.voxels.centers)
    affinity = processed.affinity.float()
    values = torch.randn(len(centers), 26, generator=torch.Generator().manual_seed(0))
    # voxel GGP on one shared kNN: the weights and the sparse products alone, 1e-4 absolute
    config = GGPConfig(k=16, tau=0.15, iterations=48, coarsen=1)
    knn = knn_voxels(centers, config.k, method="grid", cell_size=0.05)
    on_cpu = build_pooling_graph(centers, affinity, config, knn=knn, device=CPU).pool(values, config.iterations)
    on_device = build_pooling_graph(centers.to(device), affinity.to(device), config, knn=knn, device=device)
    pooled = on_device.pool(values.to(device), config.iterations).cpu()
    assert (pooled - on_cpu).abs().max() < 1e-4
    # the shipped coarse-to-fine GGP, each device finding its own neighbours: 1e-3 absolute
    shipped = segmenter.config.ggp
    cpu_graph = build_pooling_graph(centers, affinity, shipped, cell_size=0.05, device=CPU)
    dev_graph = build_pooling_graph(centers.to(device), affinity.to(device), shipped, cell_size=0.05, device=device)
    diff = (
        dev_graph.pool(values.to(device), shipped.iterations).cpu() - cpu_graph.pool(values, shipped.iterations)
    ).abs()
    assert diff.max() < 1e-3


@pytest.mark.parametrize("fp16, agree", [(False, 0.995), (True, 0.98)])
def test_segmenter_end_to_end_on_the_device_labels_like_the_cpu(device, scan, fp16, agree):
    query = QuerySet.parse("; ".join(CLASS_NAMES))
    on_cpu = _segmenter(CPU).segment(scan, query)
    on_device = _segmenter(device, fp16=fp16).segment(scan, query)
    same = float((on_device.semantic == on_cpu.semantic).mean())
    assert same >= agree, f"{same:.4f} of the points keep their label (fp16={fp16}); want >= {agree}"


def _synthetic_rooms(folder: Path, count: int) -> Path:
    """Small labelled rooms (test/training/mpec_synthetic), named by ScanNet-20 categories only: the
    GPU machine's stored text table holds those names."""
    sys.path.insert(0, str(REPO / "test" / "training"))
    from mpec_synthetic import make_room

    from ov3d_ros.io.files import save_scan

    folder.mkdir(parents=True)
    for i in range(count):
        scan, annotations = make_room(200 + i)
        entities = {key: {"category": value["category"]} for key, value in annotations["entities"].items()}
        save_scan(scan, folder / f"room_{i}.npz")
        (folder / f"room_{i}.annotations.json").write_text(json.dumps({"entities": entities}), encoding="utf-8")
    return folder


def _losses(run: Path) -> list[float]:
    with open(run / "metrics.csv", newline="") as handle:
        return [float(r["value"]) for r in csv.DictReader(handle) if r["split"] == "train" and r["name"] == "loss"]


def test_mpec_and_distillation_train_a_few_steps_with_amp(device, tmp_path):
    from ov3d_training.cli import main
    from ov3d_training.trainer.state import latest_checkpoint, load_checkpoint

    data = _synthetic_rooms(tmp_path / "rooms", 2)
    on = ["--set", f"trainer.device={device.type}", "--set", "trainer.amp=true", "--set", "trainer.steps=3"]
    configs = REPO / "training" / "configs"
    assert (
        main(
            [
                "mpec",
                "--config",
                str(configs / "mpec_tiny.yaml"),
                "--data",
                str(data),
                "--out",
                str(tmp_path / "mpec"),
                "--set",
                "data.texts=[category]",
                *on,
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "distill",
                "--config",
                str(configs / "distill_tiny.yaml"),
                "--teacher",
                str(tmp_path / "mpec"),
                "--data",
                str(data),
                "--out",
                str(tmp_path / "distill"),
                *on,
            ]
        )
        == 0
    )
    for run, export in (("mpec", "teacher"), ("distill", "student")):
        losses = _losses(tmp_path / run)
        assert len(losses) == 3 and all(math.isfinite(x) for x in losses), (run, losses)
        assert (tmp_path / run / export).is_dir()
        scaler = load_checkpoint(latest_checkpoint(tmp_path / run))["scaler"]
        assert bool(scaler) == (device.type == "cuda")  # GradScaler ran (AMP) exactly on CUDA
