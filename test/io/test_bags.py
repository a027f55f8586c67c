"""rosbag2 recordings (MCAP and sqlite3) of PointCloud2 + PoseStamped, with the annotations sidecar."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from ov3d_ros.io.bags import (
    BagFrame,
    list_pointcloud_topics,
    matrix_to_quaternion,
    quaternion_to_matrix,
    read_annotations,
    read_bag,
    write_annotations,
    write_bag,
)
from ov3d_ros.io.errors import CloudFormatError
from ov3d_ros.io.files import load_scan, read_scannet_frames
from ov3d_ros.io.scan import Scan

STORAGES = ["mcap", "sqlite3"]
ANNOTATIONS = {"12": {"category": "chair", "attributes": ["red"], "captions": ["a red chair"], "referrals": []}}


@pytest.fixture(scope="module")
def scannet_frames(scannet_npz) -> list[BagFrame]:
    scan = load_scan(scannet_npz)
    poses = read_scannet_frames(scannet_npz).cam2world
    # a third of the points per frame keeps the test quick while using the real data
    return [
        BagFrame(
            replace(scan.subset(np.arange(i, len(scan), 3)), stamp_ns=1_700_000_000_000_000_000 + i * 100_000_000), pose
        )
        for i, pose in enumerate(poses)
    ]


@pytest.mark.parametrize("storage", STORAGES)
def test_bag_round_trip_with_poses_and_annotations(tmp_path, scannet_frames, storage):
    path = write_bag(tmp_path / "rec", scannet_frames, storage=storage, annotations=ANNOTATIONS)
    assert (path / "metadata.yaml").is_file() and (path / "annotations.json").is_file()
    assert any(p.suffix == (".mcap" if storage == "mcap" else ".db3") for p in path.iterdir())
    assert list_pointcloud_topics(path) == ["/map_cloud"]
    assert read_annotations(path) == ANNOTATIONS

    frames = list(read_bag(path))  # topic and pose topic picked automatically
    assert len(frames) == len(scannet_frames)
    for written, read in zip(scannet_frames, frames):
        assert read.topic == "/map_cloud" and read.stamp_ns == written.scan.stamp_ns == read.scan.stamp_ns
        assert read.scan.frame_id == written.scan.frame_id
        for name in ("points", "colors", "labels", "instances"):
            np.testing.assert_array_equal(getattr(read.scan, name), getattr(written.scan, name), err_msg=name)
        # poses travel as float64 position + unit quaternion
        np.testing.assert_allclose(read.pose, written.pose, atol=1e-5)
        np.testing.assert_allclose(read.pose[:3, :3] @ read.pose[:3, :3].T, np.eye(3), atol=1e-12)


@pytest.mark.parametrize("storage", STORAGES)
def test_organized_cloud_with_nans_and_frames_without_pose(tmp_path, mosd_pcds, storage):
    full = load_scan(mosd_pcds[0], skip_nans=False)
    frames = [BagFrame(replace(full, stamp_ns=5)), BagFrame(replace(full, stamp_ns=6), np.eye(4))]
    path = write_bag(tmp_path / "osd", frames, topic="/camera/points", storage=storage)
    assert read_annotations(path) is None
    read = list(read_bag(path, skip_nans=False))
    assert read[0].pose is None and np.array_equal(read[1].pose, np.eye(4))
    np.testing.assert_array_equal(read[0].scan.points, full.points)  # NaNs included
    assert read[0].scan.meta["organized_shape"] == (480, 640)
    kept = next(read_bag(path))
    direct = load_scan(mosd_pcds[0])
    np.testing.assert_array_equal(kept.scan.points, direct.points)
    np.testing.assert_array_equal(kept.scan.instances, direct.instances)
    np.testing.assert_array_equal(kept.scan.meta["valid_index"], direct.meta["valid_index"])


def test_topic_selection_and_errors(tmp_path):
    scan = Scan(np.arange(12, dtype=np.float32).reshape(4, 3), stamp_ns=10)
    path = tmp_path / "two"
    write_bag(path, [BagFrame(scan, topic="/a"), BagFrame(replace(scan, stamp_ns=20), topic="/b")])
    assert list_pointcloud_topics(path) == ["/a", "/b"]
    with pytest.raises(CloudFormatError, match=r"2 PointCloud2 topics \(/a, /b\); pass topic="):
        read_bag(path)
    with pytest.raises(CloudFormatError, match="no PointCloud2 topic '/c'"):
        read_bag(path, topic="/c")
    with pytest.raises(CloudFormatError, match="no PoseStamped topic '/pose'"):
        read_bag(path, topic="/a", pose_topic="/pose")
    [frame] = read_bag(path, topic="/b")
    assert frame.stamp_ns == 20 and frame.pose is None
    with pytest.raises(FileExistsError):
        write_bag(path, [scan])
    with pytest.raises(FileNotFoundError):
        read_bag(tmp_path / "missing")
    with pytest.raises(ValueError, match="storage must be"):
        write_bag(tmp_path / "x", [scan], storage="rosbag1")


def test_pose_pairing_by_stamp_with_tolerance(tmp_path):
    scan = Scan(np.zeros((2, 3), np.float32))
    pose = np.eye(4)
    pose[:3, 3] = (1, 2, 3)
    path = write_bag(tmp_path / "p", [BagFrame(scan, pose, stamp_ns=1000), BagFrame(scan, None, stamp_ns=1400)])
    exact = list(read_bag(path))
    assert exact[0].pose is not None and exact[1].pose is None
    loose = list(read_bag(path, pose_tolerance_ns=500))
    np.testing.assert_array_equal(loose[1].pose[:3, 3], (1, 2, 3))


def test_bad_pose_is_refused(tmp_path):
    scan = Scan(np.zeros((1, 3)))
    bad = np.eye(4)
    bad[0, 0] = 2.0
    with pytest.raises(ValueError, match="must be a rotation"):
        write_bag(tmp_path / "b", [BagFrame(scan, bad)])


def test_annotations_sidecar(tmp_path):
    with pytest.raises(FileNotFoundError):
        write_annotations(tmp_path / "nope", {})
    write_annotations(tmp_path, ANNOTATIONS)
    assert read_annotations(tmp_path) == ANNOTATIONS
    (tmp_path / "annotations.json").write_text("{not json")
    with pytest.raises(CloudFormatError, match="not valid JSON"):
        read_annotations(tmp_path)


@pytest.mark.parametrize("seed", range(5))
def test_quaternion_conversion_round_trip(seed):
    rng = np.random.default_rng(seed)
    q = rng.normal(size=4)
    if seed == 0:
        q = np.array([1.0, 0.0, 0.0, 0.0])  # 180 degrees about x: trace = -1
    rotation = quaternion_to_matrix(q)
    back = matrix_to_quaternion(rotation)
    np.testing.assert_allclose(quaternion_to_matrix(back), rotation, atol=1e-12)
    assert back[3] >= 0 and np.isclose(np.linalg.norm(back), 1.0)
