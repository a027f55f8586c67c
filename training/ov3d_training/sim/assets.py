"""Turn catalogue OBJ models into render-ready assets, cached on disk once per model.

pybullet's TinyRenderer draws one colour and at most one texture per visual shape and ignores the
MTL file, so each model is split by material into *parts*, one OBJ per part. Processing, per model:

1. read the OBJ/MTL straight from the ``.sh3f`` zip (the model folder only);
2. apply the catalogue's ``modelRotation`` and turn Sweet Home 3D's Y-up frame into Z-up
   (``(x, y, z) -> (x, -z, y)``: the model's front then faces -y);
3. normalise to the unit box ``[-0.5, 0.5]^2 x [0, 1]`` so that ``meshScale = (w, d, h)`` in metres
   gives the catalogue size (the catalogue size is the model's bounding box, as in Sweet Home 3D);
4. decimate by vertex clustering when a model exceeds the face budget (TinyRenderer is CPU-bound);
5. convert textures to small PNGs (some catalogue JPEGs are progressive, which pybullet's image
   reader cannot decode, and some texture paths are missing: those parts keep the material colour).

The cache is ``$OV3D_SIM_CACHE`` or ``~/.cache/ov3d_ros/sweethome3d``; every model folder is
written to a temporary name and renamed into place, so parallel workers never see half a model.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from .catalog import CatalogEntry

ASSET_VERSION = 1
MAX_FACES = 12000
MAX_DISTORTION = 1.6
TEXTURE_MAX_SIDE = 128


def default_cache_dir() -> Path:
    env = os.environ.get("OV3D_SIM_CACHE")
    base = Path(env) if env else Path.home() / ".cache" / "ov3d_ros" / "sweethome3d"
    return base


@dataclass(frozen=True)
class Material:
    kd: tuple[float, float, float] = (0.8, 0.8, 0.8)
    texture: str | None = None  # path relative to the OBJ folder
    dissolve: float = 1.0


@dataclass(frozen=True)
class PartAsset:
    obj: str  # file name inside the model's cache folder
    rgb: tuple[float, float, float]  # material colour in [0, 1]
    texture: str | None  # PNG file name inside the cache folder, None = plain colour
    mean_rgb: tuple[float, float, float]  # what the part looks like on average (texture x colour)
    area: float  # surface area in the scaled (metric) model, m^2
    transparent: bool
    faces: int


@dataclass(frozen=True)
class ModelAsset:
    key: str  # "<library>/<index>"
    directory: str
    parts: tuple[PartAsset, ...]
    distortion: float = 1.0  # see to_unit_box; models above MAX_DISTORTION are not used

    def part_paths(self) -> list[Path]:
        return [Path(self.directory) / p.obj for p in self.parts]


# --- parsing --------------------------------------------------------------------------------------


def parse_mtl(text: str) -> dict[str, Material]:
    materials: dict[str, dict] = {}
    current: dict | None = None
    for line in text.splitlines():
        parts = line.strip().split()
        if not parts:
            continue
        tag = parts[0]
        if tag == "newmtl":
            current = materials.setdefault(" ".join(parts[1:]), {})
        elif current is None:
            continue
        elif tag == "Kd" and len(parts) >= 4:
            current["kd"] = tuple(float(x) for x in parts[1:4])
        elif tag == "map_Kd" and len(parts) >= 2:
            current["texture"] = parts[-1]  # options such as -s u v come before the file name
        elif tag == "d" and len(parts) >= 2:
            current["dissolve"] = float(parts[1])
        elif tag == "Tr" and len(parts) >= 2:
            current.setdefault("dissolve", 1.0 - float(parts[1]))
    return {name: Material(**fields) for name, fields in materials.items()}


@dataclass
class ObjMesh:
    positions: np.ndarray  # (V, 3)
    uvs: np.ndarray  # (T, 2)
    # material -> (faces (F, 3) into positions, uv indices (F, 3) with -1 = none)
    groups: dict[str, tuple[np.ndarray, np.ndarray]]
    mtllibs: list[str]


def parse_obj(text: str) -> ObjMesh:
    """Wavefront OBJ -> triangles grouped by material (polygons fan-triangulated)."""
    v_lines: list[str] = []
    vt_lines: list[str] = []
    faces: dict[str, tuple[list[int], list[int]]] = {}
    material = ""
    mtllibs: list[str] = []
    n_v = n_vt = 0
    for line in text.splitlines():
        if not line:
            continue
        c0 = line[0]
        if c0 == "v":
            c1 = line[1:2]
            if c1 == " " or c1 == "\t":
                v_lines.append(line[2:])
                n_v += 1
            elif c1 == "t":
                vt_lines.append(line[3:])
                n_vt += 1
        elif c0 == "f":
            tokens = line.split()[1:]
            if len(tokens) < 3:
                continue
            vi, ti = [], []
            for tok in tokens:
                fields = tok.split("/")
                a = int(fields[0])
                vi.append(a - 1 if a > 0 else n_v + a)
                if len(fields) > 1 and fields[1]:
                    b = int(fields[1])
                    ti.append(b - 1 if b > 0 else n_vt + b)
                else:
                    ti.append(-1)
            fv, ft = faces.setdefault(material, ([], []))
            for k in range(1, len(vi) - 1):
                fv.extend((vi[0], vi[k], vi[k + 1]))
                ft.extend((ti[0], ti[k], ti[k + 1]))
        elif line.startswith("usemtl"):
            material = line[6:].strip()
        elif line.startswith("mtllib"):
            mtllibs.append(line[6:].strip())
    positions = _parse_floats(v_lines, 3)
    uvs = _parse_floats(vt_lines, 2)
    groups = {
        m: (np.asarray(fv, dtype=np.int64).reshape(-1, 3), np.asarray(ft, dtype=np.int64).reshape(-1, 3))
        for m, (fv, ft) in faces.items()
        if fv
    }
    return ObjMesh(positions, uvs, groups, mtllibs)


def _parse_floats(lines: list[str], width: int) -> np.ndarray:
    if not lines:
        return np.zeros((0, width))
    rows = [ln.split()[:width] for ln in lines]
    rows = [r + ["0"] * (width - len(r)) for r in rows]
    return np.asarray(rows, dtype=np.float64)


# --- geometry -------------------------------------------------------------------------------------

Y_UP_TO_Z_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


def to_unit_box(
    positions: np.ndarray, rotation: tuple[float, ...] | None, size: tuple[float, float, float]
) -> tuple[np.ndarray, float]:
    """Rotate (modelRotation, then Y-up -> Z-up) and normalise to [-0.5, 0.5]^2 x [0, 1].

    Returns the unit-box positions and the *distortion*: how unevenly the catalogue size stretches
    the model (max/min of the per-axis scale factors; 1 = proportional). A few catalogue entries
    state sizes for the unrotated model, so the orientation that best fits the stated size wins.
    """
    candidates = [np.eye(3)]
    if rotation is not None:
        r = np.asarray(rotation, dtype=np.float64).reshape(3, 3)
        candidates = [r, r.T, np.eye(3)]
    best = None
    for r in candidates:
        p = positions @ r.T @ Y_UP_TO_Z_UP.T
        lo, hi = p.min(axis=0), p.max(axis=0)
        extent = np.where(hi - lo > 1e-9, hi - lo, 1.0)
        ratio = np.asarray(size) / extent
        flat = (hi - lo <= 1e-9) | (np.asarray(size) <= 1e-6)
        distortion = float(ratio[~flat].max() / ratio[~flat].min()) if (~flat).sum() else 1.0
        if best is None or distortion < best[1] - 1e-6:
            center = np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]])
            best = ((p - center) / extent, distortion)
    return best


def triangle_areas(points: np.ndarray, faces: np.ndarray) -> np.ndarray:
    if len(faces) == 0:
        return np.zeros(0)
    a, b, c = points[faces[:, 0]], points[faces[:, 1]], points[faces[:, 2]]
    return 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)


def cluster_vertices(points: np.ndarray, faces: np.ndarray, cell: float) -> tuple[np.ndarray, np.ndarray]:
    """Vertex-clustering decimation: merge vertices per grid cell, drop collapsed triangles.

    Returns (representative index per original vertex, surviving face mask).
    """
    keys = np.floor(points / cell).astype(np.int64)
    _, rep = np.unique(keys, axis=0, return_inverse=True)
    rep = rep.reshape(-1)
    f = rep[faces]
    keep = (f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2])
    return rep, keep


# --- processing -----------------------------------------------------------------------------------


def _zip_text(zf: zipfile.ZipFile, name: str) -> str | None:
    try:
        return zf.read(name).decode("latin-1")
    except KeyError:
        return None


def _load_texture(zf: zipfile.ZipFile, name: str):
    """Decoded texture as an RGB PIL image, or None when missing or unreadable."""
    from PIL import Image

    try:
        data = zf.read(name)
    except KeyError:
        return None
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
        return img.convert("RGB")
    except Exception:
        return None


def _resolve(folder: PurePosixPath, relative: str) -> str:
    parts: list[str] = []
    for piece in (folder / relative.replace("\\", "/")).parts:
        if piece == "..":
            if parts:
                parts.pop()
        elif piece != ".":
            parts.append(piece)
    return "/".join(parts)


def process_model(entry: CatalogEntry, library_zip: Path, out_dir: Path, max_faces: int = MAX_FACES) -> ModelAsset:
    """Process one catalogue model into ``out_dir`` (created) and return its asset description."""
    from PIL import Image

    out_dir.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(library_zip) as zf:
        obj_text = _zip_text(zf, entry.model)
        if obj_text is None:
            raise FileNotFoundError(f"{entry.model} not in {library_zip}")
        folder = PurePosixPath(entry.model).parent
        mesh = parse_obj(obj_text)
        materials: dict[str, Material] = {}
        for lib in mesh.mtllibs:
            text = _zip_text(zf, _resolve(folder, lib))
            if text is not None:
                materials.update(parse_mtl(text))

        unit, distortion = to_unit_box(mesh.positions, entry.model_rotation, entry.size_m)
        metric = unit * np.asarray(entry.size_m)
        all_faces = np.concatenate([f for f, _ in mesh.groups.values()]) if mesh.groups else np.zeros((0, 3), int)
        rep = np.arange(len(unit))
        keep_all = np.ones(len(all_faces), dtype=bool)
        if len(all_faces) > max_faces:
            # Grow the cell until the budget holds; cell sizes are relative to the model's size.
            cell = max(entry.size_m) / 400.0
            while True:
                rep, keep_all = cluster_vertices(metric, all_faces, cell)
                if keep_all.sum() <= max_faces or cell > max(entry.size_m) / 10:
                    break
                cell *= 1.5
            # Representative position: mean of the merged vertices.
            counts = np.bincount(rep)
            sums = np.zeros((counts.size, 3))
            np.add.at(sums, rep, unit)
            rep_pos = sums / counts[:, None]
            unit_out = rep_pos
        else:
            unit_out = unit

        parts: list[PartAsset] = []
        textures_done: dict[str, tuple[str, tuple[float, float, float]] | None] = {}
        offset = 0
        for index, (mat_name, (fv, ft)) in enumerate(mesh.groups.items()):
            keep = keep_all[offset : offset + len(fv)]
            offset += len(fv)
            fv_kept = rep[fv[keep]] if len(all_faces) > max_faces else fv[keep]
            ft_kept = ft[keep]
            if len(fv_kept) == 0:
                continue
            mat = materials.get(mat_name, Material())
            tex_file, tex_mean = None, None
            has_uv = bool(len(mesh.uvs)) and bool((ft_kept >= 0).all())
            if mat.texture and has_uv:
                tex_path = _resolve(folder, mat.texture)
                if tex_path not in textures_done:
                    img = _load_texture(zf, tex_path)
                    if img is None:
                        textures_done[tex_path] = None
                    else:
                        img.thumbnail((TEXTURE_MAX_SIDE, TEXTURE_MAX_SIDE), Image.Resampling.BILINEAR)
                        name = f"tex{len(textures_done):02d}.png"
                        img.save(out_dir / name, optimize=False)
                        mean = tuple(float(x) for x in np.asarray(img, dtype=np.float64).reshape(-1, 3).mean(0) / 255.0)
                        textures_done[tex_path] = (name, mean)
                if textures_done[tex_path] is not None:
                    tex_file, tex_mean = textures_done[tex_path]
            rgb = tuple(float(np.clip(c, 0.0, 1.0)) for c in mat.kd)
            if tex_file is None:
                mean_rgb = rgb
            else:
                # TinyRenderer multiplies the texture by the shape colour; white keeps it as drawn.
                rgb = (1.0, 1.0, 1.0)
                mean_rgb = tex_mean
            used = np.unique(fv_kept)
            remap = np.full(len(unit_out), -1, dtype=np.int64)
            remap[used] = np.arange(len(used))
            part_name = f"part{index:02d}.obj"
            _write_part(out_dir / part_name, unit_out[used], remap[fv_kept], mesh.uvs, ft_kept if tex_file else None)
            area = float(triangle_areas(unit_out * np.asarray(entry.size_m), fv_kept).sum())
            parts.append(
                PartAsset(
                    obj=part_name,
                    rgb=rgb,
                    texture=tex_file,
                    mean_rgb=tuple(float(x) for x in mean_rgb),
                    area=area,
                    transparent=mat.dissolve < 0.6,
                    faces=len(fv_kept),
                )
            )
    if not parts:
        raise ValueError(f"model {entry.model} has no faces")
    return ModelAsset(
        key=f"{entry.library}/{entry.index}", directory=str(out_dir), parts=tuple(parts), distortion=distortion
    )


def _write_part(path: Path, positions: np.ndarray, faces: np.ndarray, uvs: np.ndarray, face_uvs: np.ndarray | None):
    buf = io.StringIO()
    buf.write("# ov3d_ros simulator part (unit box, Z up)\n")
    np.savetxt(buf, positions, fmt="v %.6f %.6f %.6f")
    if face_uvs is not None:
        used_t = np.unique(face_uvs)
        remap_t = np.full(max(len(uvs), 1), -1, dtype=np.int64)
        remap_t[used_t] = np.arange(len(used_t))
        np.savetxt(buf, uvs[used_t], fmt="vt %.6f %.6f")
        rows = (
            np.stack(
                [
                    faces[:, 0],
                    remap_t[face_uvs[:, 0]],
                    faces[:, 1],
                    remap_t[face_uvs[:, 1]],
                    faces[:, 2],
                    remap_t[face_uvs[:, 2]],
                ],
                axis=1,
            )
            + 1
        )
        np.savetxt(buf, rows, fmt="f %d/%d %d/%d %d/%d")
    else:
        np.savetxt(buf, faces + 1, fmt="f %d %d %d")
    path.write_text(buf.getvalue())


class AssetCache:
    """Processed models on disk, built lazily and safely from several processes."""

    def __init__(self, root: Path | None = None, furniture_dir: Path | None = None, max_faces: int = MAX_FACES):
        from .catalog import furniture_dir as default_furniture_dir

        self.root = Path(root) if root is not None else default_cache_dir()
        self.furniture_dir = Path(furniture_dir) if furniture_dir is not None else default_furniture_dir()
        self.max_faces = max_faces
        self._memo: dict[str, ModelAsset] = {}

    def model_dir(self, entry: CatalogEntry) -> Path:
        return self.root / f"v{ASSET_VERSION}" / entry.library / entry.index

    def get(self, entry: CatalogEntry) -> ModelAsset:
        key = f"{entry.library}/{entry.index}"
        if key in self._memo:
            return self._memo[key]
        final = self.model_dir(entry)
        meta = final / "asset.json"
        if not meta.exists():
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{entry.index}-", dir=final.parent))
            try:
                asset = process_model(entry, self.furniture_dir / f"{entry.library}.sh3f", tmp, self.max_faces)
                (tmp / "asset.json").write_text(json.dumps(_asset_json(asset), indent=1))
                try:
                    os.rename(tmp, final)
                except OSError:
                    pass  # another process won the race; its copy is identical
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)
        asset = _asset_from_json(json.loads(meta.read_text()), final)
        self._memo[key] = asset
        return asset


def _asset_json(asset: ModelAsset) -> dict:
    return {
        "version": ASSET_VERSION,
        "key": asset.key,
        "distortion": asset.distortion,
        "parts": [asdict(p) for p in asset.parts],
    }


def _asset_from_json(data: dict, directory: Path) -> ModelAsset:
    parts = tuple(
        PartAsset(
            obj=p["obj"],
            rgb=tuple(p["rgb"]),
            texture=p["texture"],
            mean_rgb=tuple(p["mean_rgb"]),
            area=p["area"],
            transparent=p["transparent"],
            faces=p["faces"],
        )
        for p in data["parts"]
    )
    return ModelAsset(key=data["key"], directory=str(directory), parts=parts, distortion=data["distortion"])
