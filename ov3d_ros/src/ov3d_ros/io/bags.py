"""rosbag2 recordings (MCAP or sqlite3) of PointCloud2 streams and camera poses, via ``rosbags``.

No ROS install is needed: messages are (de)serialised with the ROS 2 Jazzy typestore of the
``rosbags`` package. A recording written here holds

* ``sensor_msgs/msg/PointCloud2`` on ``topic`` (default ``/map_cloud``), one per frame, encoded by
  :func:`ov3d_ros.io.pointcloud2.scan_to_cloud` (x, y, z, rgb, label, features ...);
* optionally ``geometry_msgs/msg/PoseStamped`` on ``pose_topic`` (default ``/camera_pose``): the
  camera-to-world pose of the frame, with the cloud's header stamp;
* optionally ``annotations.json`` beside ``metadata.yaml`` (entity id -> category, attributes,
  captions, referrals; written by the simulator). rosbags' reader only opens the files listed in
  ``metadata.yaml``, so the sidecar does not disturb it.

Clouds and poses are paired by header stamp (exactly, or within ``pose_tolerance_ns``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .errors import CloudFormatError
from .messages import jazzy_typestore, make_header, rosbags_message_types, stamp_to_ns
from .pointcloud2 import cloud_to_scan, scan_to_cloud
from .scan import Scan

POINTCLOUD2 = "sensor_msgs/msg/PointCloud2"
POSE_STAMPED = "geometry_msgs/msg/PoseStamped"
ANNOTATIONS_FILE = "annotations.json"
Storage = Literal["mcap", "sqlite3"]
# rosbag2 format 8 is read by ROS 2 Iron and later (Jazzy writes 9, and reads 8).
BAG_VERSION: Literal[8] = 8


@dataclass
class BagFrame:
    """One cloud of a recording with the camera pose recorded at the same stamp (if any).

    pose: (4, 4) float64 camera-to-world, or None. When writing, ``stamp_ns=None`` means the
    scan's own stamp and ``topic=""`` the ``topic`` argument of :func:`write_bag`.
    """

    scan: Scan
    pose: np.ndarray | None = None
    topic: str = ""
    stamp_ns: int | None = None


# --- poses -------------------------------------------------------------------------------------
def _checked_pose(pose: Any) -> np.ndarray:
    matrix = np.asarray(pose, dtype=np.float64)
    if matrix.shape != (4, 4) or not np.isfinite(matrix).all():
        raise ValueError(f"pose must be a finite 4x4 camera-to-world matrix, got shape {matrix.shape}")
    if not np.allclose(matrix[3], (0.0, 0.0, 0.0, 1.0), atol=1e-6):
        raise ValueError(f"pose's last row must be [0, 0, 0, 1], got {matrix[3].tolist()}")
    rotation = matrix[:3, :3]
    if not np.allclose(rotation.T @ rotation, np.eye(3), atol=1e-4) or np.linalg.det(rotation) <= 0:
        raise ValueError("pose's upper-left 3x3 block must be a rotation (orthonormal, det +1)")
    return matrix


def matrix_to_quaternion(rotation: np.ndarray) -> np.ndarray:
    """3x3 rotation -> unit quaternion (x, y, z, w), w >= 0 (Shepperd's method, stable near 180 deg)."""
    m = np.asarray(rotation, dtype=np.float64)
    trace = np.trace(m)
    diagonal = np.diag(m)
    k = int(np.argmax([trace, *diagonal]))
    if k == 0:
        s = 2.0 * np.sqrt(1.0 + trace)
        q = np.array([m[2, 1] - m[1, 2], m[0, 2] - m[2, 0], m[1, 0] - m[0, 1], 0.25 * s * s]) / s
    else:
        i = k - 1
        j, l = (i + 1) % 3, (i + 2) % 3  # noqa: E741
        s = 2.0 * np.sqrt(1.0 + m[i, i] - m[j, j] - m[l, l])
        q = np.empty(4)
        q[i] = 0.25 * s
        q[j] = (m[j, i] + m[i, j]) / s
        q[l] = (m[l, i] + m[i, l]) / s
        q[3] = (m[l, j] - m[j, l]) / s
    q /= np.linalg.norm(q)
    return -q if q[3] < 0 else q


def quaternion_to_matrix(q: np.ndarray) -> np.ndarray:
    """Quaternion (x, y, z, w), normalised here -> 3x3 rotation."""
    x, y, z, w = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def _pose_message(typestore: Any, pose: np.ndarray, frame_id: str, stamp_ns: int) -> Any:
    types = typestore.types
    qx, qy, qz, qw = matrix_to_quaternion(pose[:3, :3])
    tx, ty, tz = pose[:3, 3]
    return types[POSE_STAMPED](
        header=make_header(rosbags_message_types(typestore), frame_id, stamp_ns),
        pose=types["geometry_msgs/msg/Pose"](
            position=types["geometry_msgs/msg/Point"](x=float(tx), y=float(ty), z=float(tz)),
            orientation=types["geometry_msgs/msg/Quaternion"](x=float(qx), y=float(qy), z=float(qz), w=float(qw)),
        ),
    )


def _pose_matrix(msg: Any) -> np.ndarray:
    p, q = msg.pose.position, msg.pose.orientation
    quaternion = np.array([q.x, q.y, q.z, q.w], dtype=np.float64)
    if not np.isfinite(quaternion).all() or np.linalg.norm(quaternion) < 1e-9:
        raise CloudFormatError(f"pose at stamp {stamp_to_ns(msg.header.stamp)} has an invalid quaternion {quaternion}")
    matrix = np.eye(4)
    matrix[:3, :3] = quaternion_to_matrix(quaternion)
    matrix[:3, 3] = (p.x, p.y, p.z)
    return matrix


# --- annotations sidecar -----------------------------------------------------------------------
def read_annotations(bag_dir: str | Path) -> dict | None:
    """The bag's ``annotations.json`` (entity id -> category, attributes, captions, referrals), or None."""
    path = Path(bag_dir) / ANNOTATIONS_FILE
    if not path.is_file():
        return None
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CloudFormatError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(content, dict):
        raise CloudFormatError(f"{path}: expected a JSON object, got {type(content).__name__}")
    return content


def write_annotations(bag_dir: str | Path, annotations: dict) -> Path:
    """Write ``annotations.json`` into an existing bag directory (atomically: temp file + rename)."""
    bag_dir = Path(bag_dir)
    if not bag_dir.is_dir():
        raise FileNotFoundError(f"no bag directory at {bag_dir}")
    path = bag_dir / ANNOTATIONS_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(annotations, indent=2, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)
    return path


# --- writing -----------------------------------------------------------------------------------
def _storage_plugin(storage: str) -> Any:
    from rosbags.rosbag2 import StoragePlugin

    plugins = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
    if storage not in plugins:
        raise ValueError(f"storage must be 'mcap' or 'sqlite3', got {storage!r}")
    return plugins[storage]


def _as_frame(item: Any) -> BagFrame:
    if isinstance(item, BagFrame):
        return item
    if isinstance(item, Scan):
        return BagFrame(item)
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], Scan):
        return BagFrame(item[0], item[1])
    raise TypeError(f"write_bag frames must be BagFrame, Scan or (Scan, pose), got {type(item).__name__}")


def write_bag(
    path: str | Path,
    frames: Iterable[BagFrame | Scan | tuple[Scan, Any]],
    topic: str = "/map_cloud",
    pose_topic: str = "/camera_pose",
    storage: Storage = "mcap",
    *,
    annotations: dict | None = None,
) -> Path:
    """Record ``frames`` into a new rosbag2 directory ``path`` (which must not exist yet).

    Each frame's cloud is written at its stamp (receive time = header stamp); its pose, if given,
    as a PoseStamped on ``pose_topic`` with the same stamp and the scan's frame id.
    """
    from rosbags.rosbag2 import Writer, WriterError

    path = Path(path)
    plugin = _storage_plugin(storage)
    typestore = jazzy_typestore()
    types = rosbags_message_types(typestore)
    try:
        writer = Writer(path, version=BAG_VERSION, storage_plugin=plugin)
    except WriterError as exc:
        raise FileExistsError(str(exc)) from exc
    connections: dict[tuple[str, str], Any] = {}

    def connection(name: str, msgtype: str) -> Any:
        key = (name, msgtype)
        if key not in connections:
            connections[key] = writer.add_connection(name, msgtype, typestore=typestore)
        return connections[key]

    with writer:
        for item in frames:
            frame = _as_frame(item)
            stamp = int(frame.scan.stamp_ns if frame.stamp_ns is None else frame.stamp_ns)
            if stamp < 0:
                raise ValueError(f"bag stamps must be >= 0 ns, got {stamp}")
            scan = frame.scan
            if stamp != scan.stamp_ns:
                scan = replace(scan, stamp_ns=stamp)
            cloud = scan_to_cloud(scan, types)
            writer.write(
                connection(frame.topic or topic, POINTCLOUD2), stamp, typestore.serialize_cdr(cloud, POINTCLOUD2)
            )
            if frame.pose is not None:
                pose = _pose_message(typestore, _checked_pose(frame.pose), scan.frame_id, stamp)
                writer.write(connection(pose_topic, POSE_STAMPED), stamp, typestore.serialize_cdr(pose, POSE_STAMPED))
    if annotations is not None:
        write_annotations(path, annotations)
    return path


# --- reading -----------------------------------------------------------------------------------
def _open_reader(path: Path) -> Any:
    from rosbags.rosbag2 import Reader, ReaderError

    if not path.exists():
        raise FileNotFoundError(f"no rosbag2 recording at {path}")
    try:
        reader = Reader(path)
        reader.open()
    except ReaderError as exc:
        raise CloudFormatError(f"{path}: not a readable rosbag2 recording: {exc}") from exc
    return reader


def _topics_of(reader: Any, msgtype: str) -> list[str]:
    return sorted({c.topic for c in reader.connections if c.msgtype == msgtype})


def list_pointcloud_topics(path: str | Path) -> list[str]:
    """Topics of type sensor_msgs/msg/PointCloud2 in the recording, sorted."""
    reader = _open_reader(Path(path))
    try:
        return _topics_of(reader, POINTCLOUD2)
    finally:
        reader.close()


def _pick_topic(reader: Any, path: Path, topic: str | None) -> str:
    clouds = _topics_of(reader, POINTCLOUD2)
    if topic is not None:
        if topic not in clouds:
            raise CloudFormatError(f"{path}: no PointCloud2 topic {topic!r} (PointCloud2 topics: {clouds or 'none'})")
        return topic
    if len(clouds) != 1:
        others = sorted({f"{c.topic} [{c.msgtype}]" for c in reader.connections})
        what = "no PointCloud2 topic" if not clouds else f"{len(clouds)} PointCloud2 topics ({', '.join(clouds)})"
        raise CloudFormatError(f"{path}: {what}; pass topic= (topics: {', '.join(others) or 'none'})")
    return clouds[0]


def _deserialize(typestore: Any, raw: bytes, connection: Any, timestamp: int, path: Path) -> Any:
    try:
        return typestore.deserialize_cdr(raw, connection.msgtype)
    except Exception as exc:  # rosbags raises assorted errors on corrupt CDR
        raise CloudFormatError(
            f"{path}: message on {connection.topic} at {timestamp} ns cannot be deserialised as "
            f"{connection.msgtype}: {exc}"
        ) from exc


def read_bag(
    path: str | Path,
    topic: str | None = None,
    pose_topic: str | None = None,
    *,
    skip_nans: bool = True,
    pose_tolerance_ns: int = 0,
) -> Iterator[BagFrame]:
    """Yield the recording's clouds as :class:`BagFrame` in time order.

    ``topic``: the PointCloud2 topic; None picks it when the bag has exactly one. ``pose_topic``:
    a PoseStamped topic; None picks it when the bag has exactly one (no pose topic: poses None).
    A cloud gets the pose whose header stamp is nearest to its own, within ``pose_tolerance_ns``.
    Topic problems raise here, at the call; corrupt messages raise while iterating.
    """
    path = Path(path)
    typestore = jazzy_typestore()
    reader = _open_reader(path)
    try:
        cloud_topic = _pick_topic(reader, path, topic)
        pose_topics = _topics_of(reader, POSE_STAMPED)
        if pose_topic is not None and pose_topic not in pose_topics:
            raise CloudFormatError(
                f"{path}: no PoseStamped topic {pose_topic!r} (PoseStamped topics: {pose_topics or 'none'})"
            )
        if pose_topic is None and len(pose_topics) == 1:
            pose_topic = pose_topics[0]
        stamps, matrices = [], []
        if pose_topic is not None:  # poses are small: read them all up front to pair by stamp
            pose_connections = [c for c in reader.connections if c.topic == pose_topic]
            for connection, timestamp, raw in reader.messages(connections=pose_connections):
                msg = _deserialize(typestore, raw, connection, timestamp, path)
                stamps.append(stamp_to_ns(msg.header.stamp))
                matrices.append(_pose_matrix(msg))
    finally:
        reader.close()
    order = np.argsort(np.asarray(stamps, dtype=np.int64), kind="stable")
    pose_stamps = np.asarray(stamps, dtype=np.int64)[order]
    poses = [matrices[i] for i in order]
    return _iter_clouds(path, cloud_topic, pose_stamps, poses, skip_nans, pose_tolerance_ns)


def _iter_clouds(
    path: Path,
    cloud_topic: str,
    pose_stamps: np.ndarray,
    poses: list[np.ndarray],
    skip_nans: bool,
    pose_tolerance_ns: int,
) -> Iterator[BagFrame]:
    typestore = jazzy_typestore()
    reader = _open_reader(path)
    try:
        cloud_connections = [c for c in reader.connections if c.topic == cloud_topic]
        for connection, timestamp, raw in reader.messages(connections=cloud_connections):
            msg = _deserialize(typestore, raw, connection, timestamp, path)
            scan = cloud_to_scan(msg, skip_nans=skip_nans)
            scan.meta["bag_time_ns"] = int(timestamp)
            pose = _nearest_pose(pose_stamps, poses, scan.stamp_ns, pose_tolerance_ns)
            yield BagFrame(scan, pose, cloud_topic, scan.stamp_ns)
    finally:
        reader.close()


def _nearest_pose(stamps: np.ndarray, poses: list[np.ndarray], stamp: int, tolerance: int) -> np.ndarray | None:
    if not len(stamps):
        return None
    i = int(np.searchsorted(stamps, stamp))
    candidates = [j for j in (i - 1, i) if 0 <= j < len(stamps)]
    best = min(candidates, key=lambda j: abs(int(stamps[j]) - stamp))
    return poses[best].copy() if abs(int(stamps[best]) - stamp) <= tolerance else None
