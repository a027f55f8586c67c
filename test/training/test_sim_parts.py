"""Unit tests of the simulator's building blocks (no furniture package needed)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ov3d_training.sim.assets import cluster_vertices, parse_mtl, parse_obj, to_unit_box
from ov3d_training.sim.camera import Intrinsics, back_project, look_at_pose, project, render
from ov3d_training.sim.colors import COLOR_NAMES, color_name, dominant_color, sample_color
from ov3d_training.sim.fusion import VoxelMap
from ov3d_training.sim.geometry import Box, box_triangles, raycast_down
from ov3d_training.sim.sensor import KINECT_BASELINE_M, KINECT_FOCAL_PX, apply_sensor, get_sensor, kinect_sigma
from ov3d_training.sim.texts import size_adjective


def test_obj_parsing_triangulates_and_groups_by_material():
    text = (
        "mtllib m.mtl\nv 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nvt 0 0\nvt 1 0\nvt 1 1\nvt 0 1\n"
        "usemtl red\nf 1/1 2/2 3/3 4/4\nusemtl blue\nf -4 -3 -2\n"
    )
    mesh = parse_obj(text)
    assert mesh.mtllibs == ["m.mtl"]
    faces, uvs = mesh.groups["red"]
    assert faces.tolist() == [[0, 1, 2], [0, 2, 3]] and uvs.tolist() == [[0, 1, 2], [0, 2, 3]]
    assert mesh.groups["blue"][0].tolist() == [[0, 1, 2]] and (mesh.groups["blue"][1] == -1).all()
    mats = parse_mtl("newmtl red\nKd 1 0 0\nd 0.3\nnewmtl tex\nmap_Kd -s 1 1 1 wood.jpg\n")
    assert mats["red"].kd == (1.0, 0.0, 0.0) and mats["red"].dissolve == 0.3
    assert mats["tex"].texture == "wood.jpg"


def test_unit_box_normalization_and_orientation_choice():
    # A Y-up model 2 wide, 1 tall, 4 deep; Z-up it is 2 x 4 x 1 and fits the stated size exactly.
    pts = np.array([[x, y, z] for x in (-1, 1) for y in (0, 1) for z in (-2, 2)], dtype=float)
    unit, distortion = to_unit_box(pts, None, (2.0, 4.0, 1.0))
    assert np.allclose(unit.min(0), [-0.5, -0.5, 0.0]) and np.allclose(unit.max(0), [0.5, 0.5, 1.0])
    assert distortion == pytest.approx(1.0)
    # A modelRotation that would swap width and depth against the catalogue size is not taken.
    quarter_turn = (0, 0, 1, 0, 1, 0, -1, 0, 0)
    _, d = to_unit_box(pts, quarter_turn, (2.0, 4.0, 1.0))
    assert d == pytest.approx(1.0)


def test_vertex_clustering_drops_collapsed_triangles():
    pts = np.array([[0, 0, 0], [0.001, 0, 0], [1, 0, 0], [0, 1, 0]], dtype=float)
    faces = np.array([[0, 1, 3], [0, 2, 3]])
    rep, keep = cluster_vertices(pts, faces, 0.01)
    assert rep[0] == rep[1] and keep.tolist() == [False, True]


def test_raycast_down_finds_the_top_of_a_box_and_misses_outside():
    tri = box_triangles(np.array([0.5, 0.25, 0.4])) + np.array([1.0, 2.0, 0.4])
    z = raycast_down(tri, np.array([[1.0, 2.0], [1.4, 2.2], [2.0, 2.0]]))
    assert z[0] == pytest.approx(0.8) and z[1] == pytest.approx(0.8) and math.isnan(z[2])


def test_box_from_pose_rotates_the_footprint():
    b = Box.from_pose((2.0, 1.0, 0.5), (0.0, 0.0, 0.1), math.pi / 2)
    assert np.allclose(b.lo, (-0.5, -1.0, 0.1)) and np.allclose(b.hi, (0.5, 1.0, 0.6))


def test_camera_back_projection_and_projection_round_trip():
    intr = Intrinsics.from_fov(64, 48, 58.0)
    pose = look_at_pose([1.0, 2.0, 1.2], 0.7, -0.3)
    depth = np.full((48, 64), 2.5)
    depth[0, 0] = np.nan
    pts, idx = back_project(depth, intr, pose)
    assert len(pts) == 64 * 48 - 1 and idx[0] == 1
    uv, z = project(pts, intr, pose)
    assert np.allclose(z, 2.5)
    assert np.allclose(uv[:, 0], idx % 64) and np.allclose(uv[:, 1], idx // 64)
    # the optical axis: z forward, y down (camera never rolls)
    assert np.allclose(pose[:3, 1] @ [0, 0, 1] < 0, True)


def test_rendered_plane_lands_where_it_is():
    """TinyRenderer's pixel convention: a floor at z = 0 and a wall at x = 2 back-project exactly."""
    import pybullet as p

    client = p.connect(p.DIRECT)
    try:
        for half, pos in (([5, 5, 0.025], [0, 0, -0.025]), ([0.025, 5, 5], [2.025, 0, 0])):
            shape = p.createVisualShape(p.GEOM_BOX, halfExtents=half, physicsClientId=client)
            p.createMultiBody(baseVisualShapeIndex=shape, basePosition=pos, physicsClientId=client)
        intr = Intrinsics.from_fov(80, 60, 58.0)
        pose = look_at_pose([0.0, 0.0, 1.0], 0.3, -0.4)
        frame = render(client, intr, pose)
        pts, _ = back_project(frame.depth, intr, pose)
    finally:
        p.disconnect(client)
    floor = pts[pts[:, 0] < 1.98]
    wall = pts[pts[:, 2] > 0.02]
    assert len(floor) > 500 and len(wall) > 500
    assert np.abs(floor[:, 2]).max() < 2e-3
    assert np.abs(wall[:, 0] - 2.0).max() < 2e-3


def test_fusion_means_and_majority_labels_are_order_free():
    pts = np.array([[0.001, 0.001, 0.001], [0.009, 0.009, 0.009], [0.005, 0.0, 0.0], [0.5, 0.5, 0.5]])
    colors = np.array([[0, 0, 0], [100, 100, 100], [200, 200, 200], [9, 9, 9]], dtype=np.uint8)
    labels = np.array([7, 3, 3, 9], dtype=np.uint32)
    a, b = VoxelMap(0.01), VoxelMap(0.01)
    a.integrate(pts[:2], colors[:2], labels[:2])
    a.integrate(pts[2:], colors[2:], labels[2:])
    order = [3, 1, 0, 2]
    b.integrate(pts[order], colors[order], labels[order])
    for m in (a, b):
        p_, c_, l_ = m.snapshot()
        assert len(m) == 2
        assert np.allclose(p_[0], pts[:3].mean(0), atol=1e-7) and c_[0].tolist() == [100, 100, 100]
        assert l_.tolist() == [3, 9]
    tie = VoxelMap(0.01)
    tie.integrate(pts[:2], colors[:2], np.array([8, 5], np.uint32))
    assert tie.snapshot()[2].tolist() == [5]  # ties go to the smaller label


def test_kinect_model_noise_quantisation_and_range():
    intr = Intrinsics.from_fov(80, 60, 58.0)
    rng = np.random.default_rng(0)
    depth = np.full((60, 80), 2.0)
    out = apply_sensor(depth, intr, get_sensor("kinect"), rng)
    valid = np.isfinite(out)
    assert 0.9 < valid.mean() < 1.0
    k = KINECT_FOCAL_PX * KINECT_BASELINE_M * 8
    disparity = k / out[valid]
    assert np.allclose(disparity, np.round(disparity), atol=1e-6)  # 1/8-pixel disparity steps
    # the spread: a plane facing the camera head-on is slanted away from the optical axis at the
    # image border, so compare with the model's sigma at 2 m plus the quantisation step (~1.4 cm)
    assert 0.002 < np.std(out[valid] - 2.0) < float(kinect_sigma(np.array(2.0), np.array(0.6))) + 0.01
    far = apply_sensor(np.full((60, 80), 5.0), intr, get_sensor("kinect"), rng)
    assert np.isnan(far).all()
    ideal = apply_sensor(depth, intr, get_sensor("ideal"), rng)
    assert np.array_equal(ideal, depth)
    with pytest.raises(ValueError, match="unknown sensor model"):
        get_sensor("lidar")


def test_tof_flying_pixels_lie_between_foreground_and_background():
    intr = Intrinsics.from_fov(80, 60, 58.0)
    depth = np.full((60, 80), 3.0)
    depth[:, :40] = 1.0
    out = apply_sensor(depth, intr, get_sensor("tof"), np.random.default_rng(1))
    edge = out[:, 39]
    edge = edge[np.isfinite(edge)]
    assert ((edge > 1.05) & (edge < 2.95)).any() and (edge < 3.1).all()


def test_color_names_round_trip_and_dominance():
    rng = np.random.default_rng(3)
    for _ in range(200):
        name, rgb = sample_color(rng)
        assert color_name(rgb) == name and name in COLOR_NAMES
    assert color_name((0.95, 0.95, 0.95)) == "white" and color_name((0.1, 0.2, 0.7)) == "blue"
    assert dominant_color([(1, 0, 0), (0, 0, 1)], [3.0, 1.0]) == "red"
    assert dominant_color([(1, 0, 0), (0, 0, 1), (0, 1, 0)], [1.0, 1.0, 1.0]) is None


def test_size_adjectives_are_relative_to_the_class():
    assert size_adjective("bookshelf", (0.9, 0.35, 2.3)) == "tall"
    assert size_adjective("table", (1.2, 0.6, 0.45)) == "low"
    assert size_adjective("table", (0.6, 0.6, 0.45)) == "small"
    assert size_adjective("mug", (0.06, 0.06, 0.07)) == "small"
    assert size_adjective("sofa", (1.95, 0.85, 0.84)) is None
    assert size_adjective("wall", (4.0, 0.1, 2.6)) is None


def test_procedural_entities_fit_their_declared_boxes(tmp_path):
    from ov3d_training.sim import procedural as proc

    rng = np.random.default_rng(0)
    paintings = proc.painting_textures(tmp_path)
    builds = [
        proc.picture(rng, paintings),
        proc.curtain(rng, 2.3),
        proc.shower_curtain(rng, 1.5, 2.0, 0.7),
        proc.counter_top(rng, 2.0, 0.6),
        proc.base_cabinet(rng, 2.0, 0.6, 0.88),
        proc.nightstand(rng),
        proc.pillow(rng),
        proc.book(rng),
        proc.keyboard(rng),
        proc.monitor(rng),
    ]
    for parts, (w, d, h), noun in builds:
        tri = np.concatenate([p.triangles() for p in parts]).reshape(-1, 3)
        lo, hi = tri.min(0), tri.max(0)
        assert (lo >= np.array([-w / 2, -d / 2, 0.0]) - 1e-9).all(), noun
        assert (hi <= np.array([w / 2, d / 2, h]) + 1e-9).all(), noun
        # and fill it: no declared size much larger than the geometry
        assert (hi - lo >= 0.8 * np.array([w, d, h])).all(), noun
