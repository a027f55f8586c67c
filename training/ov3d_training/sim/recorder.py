"""Record one simulated scene: build the room, drive the camera, fuse, write the rosbag2 + sidecar."""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ov3d_ros.io.scan import Scan, pack_label

from .annotations import build_annotations
from .camera import Intrinsics, back_project, render
from .fusion import VoxelMap
from .layout import generate_scene
from .library import ModelLibrary
from .recipes import ROOM_TYPES
from .relations import compute_relations
from .scene import Scene
from .sensor import apply_sensor, get_sensor
from .trajectory import plan_trajectory
from .vocabulary import semantic_id
from .world import build_world

BASE_STAMP_NS = 1_700_000_000 * 10**9


@dataclass(frozen=True)
class RecordingConfig:
    frames: int = 48
    width: int = 256
    height: int = 192
    hfov_deg: float = 58.0
    voxel: float = 0.02
    publish_every: int = 16  # frames between published map clouds (the last frame always publishes)
    sensor: str = "kinect"
    storage: str = "mcap"
    cloud_topic: str = "/map_cloud"
    pose_topic: str = "/camera_pose"
    frame_period_ns: int = 200_000_000  # 5 Hz camera
    room_type: str | None = None  # None: drawn from the seed

    def __post_init__(self):
        if self.frames < 1 or self.width < 8 or self.height < 8 or self.publish_every < 1:
            raise ValueError(f"need frames >= 1, an image of at least 8x8 and publish_every >= 1, got {self}")
        if not 0.005 <= self.voxel <= 0.5:
            raise ValueError(f"voxel must be between 0.005 and 0.5 m, got {self.voxel}")
        get_sensor(self.sensor)
        if self.storage not in ("mcap", "sqlite3"):
            raise ValueError(f"storage must be 'mcap' or 'sqlite3', got {self.storage!r}")

    def intrinsics(self) -> Intrinsics:
        return Intrinsics.from_fov(self.width, self.height, self.hfov_deg)


@dataclass
class RecordedFrame:
    """One rendered frame after the sensor model (what fusion consumed)."""

    index: int
    pose: np.ndarray
    points: np.ndarray  # (N, 3) world
    pixels: np.ndarray  # (N,) flat pixel index
    labels: np.ndarray  # (N,) uint32 packed labels
    body: np.ndarray  # (H, W) renderer segmentation (body uids)
    entity: np.ndarray  # (H, W) entity id per pixel (0 = background)


@dataclass
class SceneRecording:
    path: Path | None
    scene: Scene
    annotations: dict
    clouds: list[Scan]
    poses: list[np.ndarray]
    frames: list[RecordedFrame] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


def room_type_for(seed: int, index: int) -> str:
    """Room types cycle with the scene index, so any five consecutive scenes cover all of them."""
    return ROOM_TYPES[(int(seed) + int(index)) % len(ROOM_TYPES)]


def scene_rngs(seed: int, index: int) -> tuple[np.random.Generator, np.random.Generator, np.random.Generator]:
    """Independent streams for layout, trajectory and sensor noise: changing the frame count or
    the sensor never changes the room."""
    children = np.random.SeedSequence([int(seed), int(index)]).spawn(3)
    return tuple(np.random.default_rng(c) for c in children)  # type: ignore[return-value]


def record_scene(
    library: ModelLibrary,
    seed: int,
    index: int,
    out_dir: Path | None,
    config: RecordingConfig = RecordingConfig(),
    keep_frames: bool = False,
) -> SceneRecording:
    """Simulate scene ``index`` of ``seed``; write the bag to ``out_dir`` unless it is None."""
    timings: dict[str, float] = {}
    t = time.perf_counter()
    rng_layout, rng_path, rng_sensor = scene_rngs(seed, index)
    scene = generate_scene(library, rng_layout, config.room_type or room_type_for(seed, index))
    facts = compute_relations(scene)
    timings["layout"] = time.perf_counter() - t

    t = time.perf_counter()
    world = build_world(scene)
    intr = config.intrinsics()
    sensor = get_sensor(config.sensor)
    poses = plan_trajectory(scene, rng_path, config.frames)
    body_to_entity = world.entity_lookup()
    entity_semantic = np.zeros(len(scene.entities) + 1, dtype=np.uint32)
    for e in scene.entities:
        entity_semantic[e.id] = semantic_id(e.category)
    fused = VoxelMap(config.voxel)
    clouds: list[Scan] = []
    cloud_poses: list[np.ndarray] = []
    frames: list[RecordedFrame] = []
    stamp0 = BASE_STAMP_NS + int(index) * 3600 * 10**9
    render_s = 0.0
    try:
        for i, pose in enumerate(poses):
            t_r = time.perf_counter()
            frame = render(world.client, intr, pose)
            render_s += time.perf_counter() - t_r
            depth = apply_sensor(frame.depth, intr, sensor, rng_sensor)
            points, pixels = back_project(depth, intr, pose)
            bodies = frame.body.ravel()[pixels]
            entity = body_to_entity[bodies]
            labels = pack_label(entity_semantic[entity], entity)
            colors = frame.rgb.reshape(-1, 3)[pixels]
            fused.integrate(points, colors, labels)
            if keep_frames:
                ent_img = np.where(frame.body >= 0, body_to_entity[np.maximum(frame.body, 0)], 0)
                frames.append(RecordedFrame(i, pose, points, pixels, labels, frame.body, ent_img))
            if (i + 1) % config.publish_every == 0 or i == len(poses) - 1:
                pts, cols, labs = fused.snapshot()
                sem, inst = (labs >> 16).astype(np.int32), (labs & 0xFFFF).astype(np.int32)
                stamp = stamp0 + i * config.frame_period_ns
                clouds.append(Scan(pts, cols, labels=sem, instances=inst, frame_id="map", stamp_ns=stamp))
                cloud_poses.append(pose)
    finally:
        world.close()
    timings["render"] = render_s
    timings["sense_and_fuse"] = time.perf_counter() - t - render_s

    recording = {
        "generator": "ov3d_training.sim",
        # which code drew the room: (generator, seed, index) names a room only for one version of the
        # generator, and a model card must be able to say which rooms it was trained on
        "code": generator_code(),
        "seed": int(seed),
        "scene_index": int(index),
        "config": {k: v for k, v in asdict(config).items()},
        "sensor": sensor.to_json(),
        "camera": {
            "intrinsics": intr.to_json(),
            "optical_frame": "x right, y down, z forward (REP 103); poses are camera-to-map",
            "trajectory": [
                {"stamp_ns": stamp0 + i * config.frame_period_ns, "pose": [round(float(v), 6) for v in p.ravel()]}
                for i, p in enumerate(poses)
            ],
        },
        "topics": {"cloud": config.cloud_topic, "pose": config.pose_topic, "frame_id": "map"},
        "published_stamps_ns": [int(c.stamp_ns) for c in clouds],
        "points": len(clouds[-1]) if clouds else 0,
    }
    annotations = build_annotations(scene, facts, recording)
    path = None
    if out_dir is not None:
        t = time.perf_counter()
        path = write_recording(Path(out_dir), clouds, cloud_poses, annotations, config)
        timings["write"] = time.perf_counter() - t
    return SceneRecording(path, scene, annotations, clouds, cloud_poses, frames, timings)


def generator_code() -> dict:
    """The package version and git commit (None outside a checkout) of the code drawing rooms."""
    from ov3d_ros import __version__
    from ov3d_ros.core.provenance import git_commit

    return {"version": __version__, "git_commit": git_commit()}


def write_recording(
    out_dir: Path, clouds: list[Scan], poses: list[np.ndarray], annotations: dict, config: RecordingConfig
) -> Path:
    """Write bag + sidecar under a temporary name and rename it into place (never a half bag)."""
    from ov3d_ros.io.bags import BagFrame, write_bag

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    partial = out_dir.with_name("." + out_dir.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    write_bag(
        partial,
        [BagFrame(c, p) for c, p in zip(clouds, poses)],
        topic=config.cloud_topic,
        pose_topic=config.pose_topic,
        storage=config.storage,
        annotations=annotations,
    )
    if out_dir.exists():
        shutil.rmtree(out_dir)
    partial.rename(out_dir)
    _rename_storage(out_dir, partial.name)
    return out_dir


def _rename_storage(bag_dir: Path, old_stem: str) -> None:
    """rosbag2 names its storage files after the directory; keep them consistent after the rename."""
    meta = bag_dir / "metadata.yaml"
    text = meta.read_text()
    for f in sorted(bag_dir.iterdir()):
        if f.name.startswith(old_stem):
            new = f.name.replace(old_stem, bag_dir.name, 1)
            f.rename(bag_dir / new)
            text = text.replace(f.name, new)
    meta.write_text(text)
