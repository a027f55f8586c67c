"""PLY / PCD / npz reading and writing, LZF, and the real mOSD and ScanNet files."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ov3d_ros.io import lzf
from ov3d_ros.io.errors import CloudFormatError
from ov3d_ros.io.files import load_scan, read_scannet_frames, save_scan
from ov3d_ros.io.messages import plain_message_types
from ov3d_ros.io.pointcloud2 import cloud_to_scan, scan_to_cloud
from ov3d_ros.io.scan import Scan

MOSD_SHAPE = (480, 640)


def _assert_same(a: Scan, b: Scan, *, nan_ok: bool = False) -> None:
    np.testing.assert_array_equal(a.points, b.points)
    for name in ("colors", "normals", "labels", "instances", "features"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            np.testing.assert_array_equal(x, y, err_msg=name)


@pytest.fixture(scope="module")
def synthetic() -> Scan:
    rng = np.random.default_rng(7)
    n = 257
    return Scan(
        points=rng.normal(scale=3.0, size=(n, 3)).astype(np.float32),
        colors=rng.integers(0, 256, size=(n, 3), dtype=np.uint8),
        normals=rng.normal(size=(n, 3)).astype(np.float32),
        labels=rng.integers(0, 41, n),
        instances=rng.integers(0, 65536, n),
        features=rng.normal(size=(n, 5)).astype(np.float32),
        frame_id="room",
        stamp_ns=42,
    )


@pytest.mark.parametrize(
    ("suffix", "options"),
    [
        (".ply", {}),
        (".ply", {"fmt": "ascii"}),
        (".ply", {"fmt": "binary_big_endian"}),
        (".pcd", {}),
        (".pcd", {"data": "ascii"}),
        (".pcd", {"data": "binary_compressed"}),
        (".npz", {}),
        (".npz", {"compress": False}),
    ],
)
def test_write_then_read_is_exact(tmp_path, synthetic, suffix, options):
    path = tmp_path / f"scan{suffix}"
    save_scan(synthetic, path, **options)
    back = load_scan(path)
    _assert_same(back, synthetic)
    if suffix == ".npz":
        assert (back.frame_id, back.stamp_ns) == ("room", 42)


def test_npz_keeps_meta(tmp_path, synthetic):
    scan = Scan(
        synthetic.points,
        meta={
            "organized_shape": (1, 257),
            "valid_index": np.arange(257),
            "extra_fields": {"intensity": np.ones(257, np.float32)},
            "note": "hi",
        },
    )
    save_scan(scan, tmp_path / "a.npz")
    back = load_scan(tmp_path / "a.npz")
    assert back.meta["note"] == "hi" and back.meta["organized_shape"] == (1, 257)
    np.testing.assert_array_equal(back.meta["valid_index"], np.arange(257))
    np.testing.assert_array_equal(back.meta["extra_fields"]["intensity"], 1.0)


def test_scannet_npz_layout(scannet_npz):
    scan = load_scan(scannet_npz)
    raw = np.load(scannet_npz)
    assert len(scan) == len(raw["xyz"]) == 81369
    np.testing.assert_array_equal(scan.points, raw["xyz"])
    np.testing.assert_array_equal(scan.colors, raw["rgb"])
    np.testing.assert_array_equal(scan.labels, raw["sem_nyu40"])
    np.testing.assert_array_equal(scan.instances, raw["inst"])
    assert scan.meta["label_set"] == "nyu40" and scan.meta["has_frames"]
    frames = read_scannet_frames(scannet_npz)
    assert frames.images.shape == (3, 968, 1296, 3) and frames.cam2world.shape == (3, 4, 4)
    assert frames.intrinsics[0, 0] == pytest.approx(1169.621094)


def test_mosd_binary_compressed_clouds(mosd_pcds):
    """All ten real Kinect clouds: NaNs dropped on request, labels aligned.

    Nine are organised 640x480 with NaN pixels; test58.pcd is stored unorganised (HEIGHT 1) with
    its valid points only.
    """
    organized = 0
    for path in mosd_pcds:
        full = load_scan(path, skip_nans=False)
        assert full.meta["pcd_data"] == "binary_compressed"
        valid = np.isfinite(full.points).all(axis=1)
        if "organized_shape" in full.meta:
            organized += 1
            assert full.meta["organized_shape"] == MOSD_SHAPE and len(full) == MOSD_SHAPE[0] * MOSD_SHAPE[1]
            assert not valid.all(), path.name
        else:
            assert valid.all(), path.name
        # label 0 means "no point": exactly the pixels without a valid 3D point
        np.testing.assert_array_equal(full.instances == 0, ~valid, err_msg=path.name)
        np.testing.assert_array_equal(full.labels, 0)
        assert full.colors is not None and full.colors.std() > 10  # real colour, not zeros

        kept = load_scan(path)
        assert len(kept) == int(valid.sum()) and np.isfinite(kept.points).all()
        index = kept.meta["valid_index"] if len(kept) < len(full) else np.arange(len(full))
        np.testing.assert_array_equal(kept.points, full.points[index])
        np.testing.assert_array_equal(kept.instances, full.instances[index])
        np.testing.assert_array_equal(kept.colors, full.colors[index])
        assert kept.instances.min() >= 1 and kept.instances.max() >= 10  # table parts and objects
    assert organized == 9


def test_mosd_known_values(mosd_pcds):
    path = next(p for p in mosd_pcds if p.name == "test0.pcd")
    scan = load_scan(path)
    assert len(scan) == 189198
    assert sorted(np.unique(scan.instances).tolist()) == [1, 20, 30]


def test_mosd_partial_nan_points_are_dropped(mosd_pcds):
    # test25 has pixels with x = y = -0.0 but z = NaN: not a point either.
    path = next(p for p in mosd_pcds if p.name == "test25.pcd")
    full = load_scan(path, skip_nans=False)
    partial = np.isfinite(full.points).any(axis=1) & ~np.isfinite(full.points).all(axis=1)
    assert partial.sum() > 0
    kept = load_scan(path)
    assert len(kept) == int(np.isfinite(full.points).all(axis=1).sum())


def test_mosd_through_pointcloud2_organized_with_nans(mosd_pcds):
    path = mosd_pcds[0]
    full = load_scan(path, skip_nans=False)
    msg = scan_to_cloud(full, plain_message_types())
    assert (msg.height, msg.width, msg.is_dense) == (*MOSD_SHAPE, False)
    assert [f.name for f in msg.fields] == ["x", "y", "z", "rgb", "label"]
    decoded = cloud_to_scan(msg)
    direct = load_scan(path)
    _assert_same(decoded, direct)
    np.testing.assert_array_equal(decoded.meta["valid_index"], direct.meta["valid_index"])
    assert decoded.meta["organized_shape"] == MOSD_SHAPE


def test_organized_pcd_round_trip(tmp_path, mosd_pcds):
    full = load_scan(mosd_pcds[0], skip_nans=False)
    for data in ("binary", "binary_compressed"):
        save_scan(full, tmp_path / f"o_{data}.pcd", data=data)
        back = load_scan(tmp_path / f"o_{data}.pcd", skip_nans=False)
        assert back.meta["organized_shape"] == MOSD_SHAPE
        np.testing.assert_array_equal(back.points, full.points)
        np.testing.assert_array_equal(back.instances, full.instances)


# --- hand-written files of other producers ---------------------------------------------------
def test_ply_mesh_with_faces_loads_vertices(tmp_path):
    header = (
        "ply\nformat binary_little_endian 1.0\ncomment mesh\nelement vertex 3\n"
        "property float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\nproperty uchar alpha\n"
        "property ushort label\n"
        "element face 1\nproperty list uchar int vertex_indices\nend_header\n"
    )
    vertices = b"".join(struct.pack("<fffBBBBH", i, 2 * i, 3 * i, 10 * i, 20, 30, 255, 7 + i) for i in range(3))
    face = struct.pack("<Biii", 3, 0, 1, 2)
    path = tmp_path / "mesh.ply"
    path.write_bytes(header.encode() + vertices + face)
    scan = load_scan(path)
    np.testing.assert_array_equal(scan.points, [[0, 0, 0], [1, 2, 3], [2, 4, 6]])
    np.testing.assert_array_equal(scan.colors[:, 0], [0, 10, 20])
    np.testing.assert_array_equal(scan.labels, [7, 8, 9])
    np.testing.assert_array_equal(scan.meta["extra_fields"]["alpha"], 255)


def test_ascii_ply_float_colors_and_nan(tmp_path):
    text = (
        "ply\nformat ascii 1.0\nelement vertex 3\nproperty double x\nproperty double y\nproperty double z\n"
        "property float r\nproperty float g\nproperty float b\nproperty int instance\nend_header\n"
        "0 0 0 1 0 0.5 4\nnan 1 1 0 1 0 5\n2 2 2 0 0 1 6\n"
    )
    path = tmp_path / "a.ply"
    path.write_text(text)
    scan = load_scan(path)
    np.testing.assert_array_equal(scan.colors, [[255, 0, 128], [0, 0, 255]])
    np.testing.assert_array_equal(scan.instances, [4, 6])
    np.testing.assert_array_equal(scan.meta["valid_index"], [0, 2])


def test_ascii_pcd_with_padding_field_and_counts(tmp_path):
    text = (
        "# .PCD v0.7\nVERSION 0.7\nFIELDS x y z _ rgb label features\nSIZE 4 4 4 1 4 4 4\nTYPE F F F U F U F\n"
        "COUNT 1 1 1 4 1 1 2\nWIDTH 2\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS 2\nDATA ascii\n"
        f"1 2 3 0 0 0 0 {float(np.uint32(0x00FF8001).view(np.float32)):.9g} {(3 << 16) | 9} 0.5 0.25\n"
        "4 5 6 0 0 0 0 0 0 1 2\n"
    )
    path = tmp_path / "a.pcd"
    path.write_text(text)
    scan = load_scan(path)
    np.testing.assert_array_equal(scan.points, [[1, 2, 3], [4, 5, 6]])
    np.testing.assert_array_equal(scan.colors, [[255, 128, 1], [0, 0, 0]])
    np.testing.assert_array_equal(scan.labels, [3, 0])
    np.testing.assert_array_equal(scan.instances, [9, 0])
    np.testing.assert_array_equal(scan.features, [[0.5, 0.25], [1, 2]])


MALFORMED = {
    "truncated binary pcd": (
        ".pcd",
        b"VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 10\nHEIGHT 1\nPOINTS 10\nDATA binary\n"
        + bytes(50),
        "binary body has 50 bytes but 10 points x 12 bytes = 120 were expected",
    ),
    "points mismatch": (
        ".pcd",
        b"FIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nWIDTH 10\nHEIGHT 2\nPOINTS 10\nDATA binary\n",
        "POINTS 10 != WIDTH*HEIGHT = 10*2 = 20",
    ),
    "bad pcd type": (
        ".pcd",
        b"FIELDS x y z\nSIZE 4 4 2\nTYPE F F F\nWIDTH 1\nDATA ascii\n1 2 3\n",
        "field 'z' has TYPE F SIZE 2",
    ),
    "pcd without z": (".pcd", b"FIELDS x y\nSIZE 4 4\nTYPE F F\nWIDTH 1\nDATA ascii\n1 2\n", "PCD has no field z"),
    "corrupt lzf size": (
        ".pcd",
        b"FIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nWIDTH 2\nDATA binary_compressed\n"
        + struct.pack("<II", 3, 99)
        + b"\x00ab",
        "uncompresses to 99 bytes but 2 points x 12 bytes = 24 were expected",
    ),
    "duplicate pcd field": (
        ".pcd",
        b"FIELDS x y z x\nSIZE 4 4 4 4\nTYPE F F F F\nWIDTH 1\nDATA ascii\n1 2 3 4\n",
        "FIELDS names x more than once",
    ),
    "duplicate ply property": (
        ".ply",
        b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\nproperty float z\nproperty float x\nend_header\n1 2 3 4\n",
        "names a property twice",
    ),
    "no end_header": (".ply", b"ply\nformat ascii 1.0\nelement vertex 1\n", "no end_header"),
    "ply without vertex": (".ply", b"ply\nformat ascii 1.0\nelement face 0\nend_header\n", "no 'vertex' element"),
    "truncated ply": (
        ".ply",
        b"ply\nformat binary_little_endian 1.0\nelement vertex 5\nproperty float x\nproperty float y\nproperty float z\nend_header\n"
        + bytes(20),
        "needs 60 bytes (5 x 12) but 20 remain",
    ),
    "not an npz": (".npz", b"hello", "not a readable npz archive"),
    "unknown suffix": (".xyz", b"", "unsupported file type '.xyz'"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_files_raise_cloud_format_error(tmp_path, case):
    suffix, content, message = MALFORMED[case]
    path = tmp_path / f"bad{suffix}"
    path.write_bytes(content)
    with pytest.raises(CloudFormatError) as caught:
        load_scan(path)
    assert message in str(caught.value)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_scan(tmp_path / "nothing.ply")


# --- LZF -----------------------------------------------------------------------------------------
def test_lzf_back_references_including_overlap():
    # literal "abc", then copy 5 from distance 3 (overlapping: "abcab"), then copy 9 (len 7+2) from distance 1
    stream = bytes([2]) + b"abc" + bytes([(3 << 5) | 0, 2]) + bytes([(7 << 5) | 0, 0, 0])
    assert lzf.decompress(stream, 3 + 5 + 9) == b"abc" + b"abcab" + b"b" * 9


@pytest.mark.parametrize(
    ("stream", "size", "message"),
    [
        (bytes([5]) + b"ab", 6, "overruns"),
        (bytes([0]) + b"a" + bytes([(1 << 5), 5]), 4, "points 6 bytes back but only 1"),
        (bytes([0]) + b"a" + bytes([(7 << 5)]), 10, "ends inside a back-reference"),
        (bytes([1]) + b"ab", 5, "decodes to 2 bytes but 5 were expected"),
    ],
)
def test_lzf_corrupt_streams(stream, size, message):
    with pytest.raises(CloudFormatError, match=message):
        lzf.decompress(stream, size)


@pytest.mark.parametrize("length", [0, 1, 31, 32, 33, 1000])
def test_lzf_literal_compression_round_trip(length):
    data = np.random.default_rng(length).integers(0, 256, length, dtype=np.uint8).tobytes()
    assert lzf.decompress(lzf.compress_literal(data), length) == data


# --- fuzzing the file readers --------------------------------------------------------------------
PCD_HEADER = (
    b"VERSION 0.7\nFIELDS x y z label\nSIZE 4 4 4 4\nTYPE F F F U\nCOUNT 1 1 1 1\nWIDTH 3\nHEIGHT 1\nPOINTS 3\n"
)
PLY_HEADER = (
    b"ply\nformat binary_little_endian 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\n"
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.sampled_from([".pcd", ".ply"]),
    st.sampled_from([b"", b"DATA ascii\n", b"DATA binary\n", b"DATA binary_compressed\n", b"end_header\n"]),
    st.binary(max_size=80),
    st.integers(0, 200),
)
def test_fuzzed_files_load_or_raise_cloud_format_error(tmp_path, suffix, data_line, body, cut):
    header = PCD_HEADER if suffix == ".pcd" else PLY_HEADER
    content = (header + data_line + body)[: len(header) + cut] if cut < 100 else header + data_line + body
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(content)
    try:
        scan = load_scan(path)
    except CloudFormatError as exc:
        assert str(exc)
    else:
        assert scan.points.shape[1] == 3 and np.isfinite(scan.points).all()
