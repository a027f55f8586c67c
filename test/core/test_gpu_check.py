"""The GPU check, proven on the CPU: the dry run of both modes really runs every step, the payload
fits the 64 MiB one call may carry, packed scenes train like the originals, and the spconv bundle
unpacks and imports under Python 3.12 (the GPU machine's)."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from ov3d_ros.bench.gpu_check import LIMIT_MIB, pack, size_report, unpack_scenes

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
ROOMS = ("scene0001_00.npz", "scene0004_00.npz")


@pytest.fixture(scope="module")
def payload(tmp_path_factory, shared_data) -> Path:
    if not (SHARED / "device").is_dir():
        pytest.skip(f"no spconv bundle at {SHARED / 'device'}")
    out = tmp_path_factory.mktemp("gpu") / "payload"
    manifest = pack(out, [str(shared_data / "scannet_rooms" / name) for name in ROOMS], SHARED)
    assert manifest["train_scenes"]["scenes"] == len(ROOMS)
    return out


def test_the_payload_fits_what_one_call_may_carry(payload, tmp_path):
    report = size_report(payload)
    print("size:", json.dumps(report))
    parts = report["payload_mib"]
    assert {"device", "data", "text_embeddings.npz", "train_scenes.npz", "manifest.json"} <= set(parts)
    assert parts["device"] > 35  # the whole bundle travels
    assert report["total_mib"] == pytest.approx(report["checkout_mib"] + sum(parts.values()), abs=0.05)
    assert report["fits"] and report["total_mib"] <= LIMIT_MIB, report
    # the evaluation scan travels without its images, its points and labels unchanged
    from ov3d_ros.io.files import load_scan

    carried, shared = (
        load_scan(payload / "data" / "scannet" / "scene0000_00.npz"),
        load_scan(SHARED / "data" / "scannet" / "scene0000_00.npz"),
    )
    assert (carried.points == shared.points).all() and (carried.labels == shared.labels).all()
    assert (carried.instances == shared.instances).all() and (carried.colors == shared.colors).all()
    # the check says no when it does not fit (a sparse 64 MiB file stands for too much data)
    (tmp_path / "too_much").mkdir()
    with open(tmp_path / "too_much" / "big.bin", "wb") as handle:
        handle.truncate(64 * 2**20)
    cmd = [sys.executable, "-m", "ov3d_ros.bench.gpu_check", "size", "--payload", str(tmp_path / "too_much")]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and json.loads(out.stdout)["fits"] is False


def test_packed_scenes_prepare_like_their_sources(tmp_path, shared_data):
    sys.path.insert(0, str(REPO / "test" / "training"))
    from mpec_synthetic import write_npz_scans

    from ov3d_ros.bench.gpu_check import TEACHER_RECIPE, pack_scenes
    from ov3d_ros.core.text import MINILM_ID, load_text_encoder
    from ov3d_training.data.scene import prepare_scene
    from ov3d_training.data.sources import discover_sources, load_source
    from ov3d_training.mpec.config import load_mpec_config

    sources = [*write_npz_scans(tmp_path / "synthetic", 1), shared_data / "scannet_rooms" / ROOMS[0]]
    encoder = load_text_encoder(MINILM_ID)
    _record, groups = pack_scenes([str(s) for s in sources], tmp_path / "pack.npz", TEACHER_RECIPE, encoder)
    unpacked = unpack_scenes(tmp_path / "pack.npz", tmp_path / "unpacked")
    config = load_mpec_config(TEACHER_RECIPE).data.scene_config()

    def encode(texts, kinds):
        return np.zeros((len(texts), 384), np.float32)

    for original, packed in zip(
        discover_sources([str(s) for s in sources]), discover_sources([str(p) for p in unpacked])
    ):
        a = prepare_scene(load_source(original), config, encode, 384)
        b = prepare_scene(load_source(packed), config, encode, 384)
        # the same voxels, each point within 1 mm (rounded to mm, nudged back inside its voxel)
        assert len(a.points) == len(b.points) and np.abs(a.points - b.points).max() <= 0.00101
        np.testing.assert_array_equal(a.entity, b.entity)
        np.testing.assert_array_equal(a.colors, b.colors)
        assert a.texts == b.texts and (a.match_text == b.match_text).all() and (a.match_entity == b.match_entity).all()
        assert np.abs(a.normals - b.normals).max() < 0.01
    synthetic_texts = prepare_scene(load_source(discover_sources([str(sources[0])])[0]), config, encode, 384).texts
    assert synthetic_texts and set(synthetic_texts) <= {t for texts in groups.values() for t in texts}


@pytest.mark.slow
@pytest.mark.timeout(5400)  # ~4 min on an idle 2-core machine, 30+ under load: the CUDA test set runs on the CPU here
def test_dry_run_of_the_check_and_the_sprint_on_the_cpu(payload, tmp_path):
    out = tmp_path / "out"
    cmd = [
        "bash",
        str(REPO / "scripts" / "gpu_check.sh"),
        "--payload",
        str(payload),
        "--out",
        str(out),
        "--device",
        "cpu",
        "--train",
        "--teacher-minutes",
        "0.05",
        "--student-minutes",
        "0.05",
        "--workers",
        "0",
        "--bench-repeats",
        "1",
        "--train-set",
        "trainer.cpu_threads=1",
        "--tests-timeout",
        "2400",
        "--bench-timeout",
        "1200",
        "--part-overhead-s",
        "1200",
    ]  # a loaded 2-core CPU, not the GPU's limits
    env = {**os.environ, "PYTHON": sys.executable}
    env.pop("OV3D_TEXT_EMBEDDINGS", None)
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=5300)
    log = (out / "log.txt").read_text() if (out / "log.txt").is_file() else ""
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:] + log[-5000:]
    summary = json.loads((out / "summary.json").read_text())
    assert {name: step["status"] for name, step in summary["steps"].items()} == dict.fromkeys(
        ["cuda_tests", "bench", "teacher", "student"], "ok"
    )
    # the CUDA test set ran (on the CPU), every test of it, none skipped
    suite = ET.parse(out / "cuda_tests.xml").getroot().find("testsuite")
    assert int(suite.get("tests")) >= 9 and suite.get("failures") == suite.get("errors") == suite.get("skipped") == "0"
    # the bench measured the pipeline with the packaged model and the stored text table
    bench = json.loads((out / "bench.json").read_text())
    assert bench["weights"] == "trained" and bench["end_to_end_100k_s"] > 0 and bench["device"] == "cpu"
    # teacher then student trained until their budgets ran out, and came back in parts
    for part in ("teacher", "student"):
        assert summary["train"][part]["steps"] >= 1
    archive = summary["train"]["archive"]
    assert archive["complete"] and archive["parts"]
    joined = tmp_path / "sprint.tar.gz"
    joined.write_bytes(b"".join((out / name).read_bytes() for name in archive["parts"]))
    with tarfile.open(joined) as tar:
        names = set(tar.getnames())
    assert {"mpec/teacher/teacher.safetensors", "distill/student/model.safetensors", "mpec/curves.png"} <= names
    assert any(n.startswith("distill/checkpoints/step_") for n in names)
    # what the GPU tool can return: at most 8 files, each at most 16 MiB, no folders
    files = list(out.iterdir())
    assert len(files) <= 8 and all(f.is_file() and f.stat().st_size <= 16 * 2**20 for f in files), files


def _python312() -> str | None:
    """A working python3.12: pyenv's own build first (its shim refuses outside a 3.12 setting), else PATH."""
    candidates = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.12*/bin/python3.12")))
    candidates += [p for p in [shutil.which("python3.12")] if p]
    for candidate in candidates:
        if subprocess.run([candidate, "-c", "pass"], capture_output=True, timeout=60).returncode == 0:
            return candidate
    return None


@pytest.mark.slow
def test_the_bundle_unpacks_and_imports_under_python_312(tmp_path):
    python = _python312()
    if python is None:
        pytest.skip("no python3.12 on this machine (PATH or ~/.pyenv/versions/3.12*): the bundle is built for 3.12")
    if not (SHARED / "device").is_dir():
        pytest.skip(f"no spconv bundle at {SHARED / 'device'}")
    # a fresh 3.12 environment with what the GPU image has that spconv/cumm import (numpy, pybind11, ninja)
    venv = tmp_path / "venv312"
    subprocess.run([python, "-m", "venv", str(venv)], check=True, timeout=300)
    py = str(venv / "bin" / "python")
    subprocess.run(
        [py, "-m", "pip", "install", "-q", "--disable-pip-version-check", "numpy", "pybind11", "ninja"],
        check=True,
        timeout=900,
    )
    payload = tmp_path / "payload"
    payload.mkdir()
    (payload / "device").symlink_to(SHARED / "device")
    site = tmp_path / "site"
    # the script's own unpack step, as the GPU machine runs it
    subprocess.run(
        ["bash", str(REPO / "scripts" / "gpu_check.sh"), "--unpack-only", str(site), "--payload", str(payload)],
        check=True,
        timeout=600,
        env={**os.environ, "PYTHON": py},
    )
    probe = (
        "import cumm, spconv; from spconv.core_cc.csrc.sparse.all import SpconvOps; "
        "print(spconv.__version__, cumm.__version__)"
    )
    done = subprocess.run(
        [py, "-c", probe], capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(site)}
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["2.3.8", "0.7.11"]
