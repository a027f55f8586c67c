"""Read the Sweet Home 3D furniture catalogues (Debian package ``sweethome3d-furniture``).

Each ``.sh3f`` file is a zip holding ``PluginFurnitureCatalog.properties`` (Java properties,
ISO-8859-1 with ``\\uXXXX`` escapes; one numbered block per model: name, category, width/depth/
height in cm, elevation, model path, creator, ...) and one folder per model (OBJ + MTL + textures).
Install with ``apt-get install -y sweethome3d-furniture``.
"""

from __future__ import annotations

import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from .vocabulary import map_catalogue_entry

DEFAULT_FURNITURE_DIR = Path("/usr/share/sweethome3d/furniture")
PROPERTIES = "PluginFurnitureCatalog.properties"

# Licence of each library as stated in its properties file (short SPDX-like id, full statement).
LIBRARY_LICENSES: dict[str, tuple[str, str]] = {
    "BlendSwap-CC-0": (
        "CC0-1.0",
        "Public domain (Creative Commons Zero); models from blendswap.com, converted by Emmanuel Puybaret / eTeks",
    ),
    "BlendSwap-CC-BY": (
        "CC-BY-3.0",
        "Creative Commons Attribution 3.0; models from blendswap.com, converted by Emmanuel Puybaret / eTeks",
    ),
    "KatorLegaz": (
        "CC-BY-3.0-US",
        "Creative Commons Attribution 3.0 United States; (c) 2003-2008 Andrew Kator & Jennifer Legaz",
    ),
    "Reallusion": ("CC-BY-3.0-US", "Creative Commons Attribution 3.0 United States; (c) 2008-2016 Reallusion"),
    "Scopia": (
        "CC-BY-3.0",
        "Creative Commons Attribution 3.0 Unported; (c) Emmanuel Puybaret / eTeks and Scopia Visual Interfaces Systems",
    ),
}


class CatalogError(RuntimeError):
    """The furniture catalogue is missing or unreadable; the message says how to install it."""


@dataclass(frozen=True)
class CatalogEntry:
    library: str  # file stem of the .sh3f, e.g. "Scopia"
    index: str  # the block number in the properties file
    catalog_id: str
    name: str
    category: str
    model: str  # path of the OBJ inside the zip (no leading slash)
    width_cm: float
    depth_cm: float
    height_cm: float
    elevation_cm: float
    drop_on_top_cm: float | None  # height of the surface things are put on, None if not droppable
    door_or_window: bool
    model_rotation: tuple[float, ...] | None  # row-major 3x3 applied to the OBJ before sizing
    creator: str
    license: str
    license_text: str
    cls: str | None = None  # vocabulary class, None when unused
    noun: str | None = None
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def size_m(self) -> tuple[float, float, float]:
        return (self.width_cm / 100.0, self.depth_cm / 100.0, self.height_cm / 100.0)

    def attribution(self) -> dict:
        return {
            "source": f"Sweet Home 3D furniture library {self.library} (Debian package sweethome3d-furniture)",
            "model": self.name,
            "catalog_id": self.catalog_id,
            "creator": self.creator,
            "license": self.license,
        }


_UNICODE_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")


def parse_properties(text: str) -> dict[str, str]:
    """Java .properties -> dict (continuation lines, ``\\uXXXX`` escapes, ``=``/``:`` separators)."""
    out: dict[str, str] = {}
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.strip() if pending else raw.strip()
        pending = ""
        if not line or line[0] in "#!":
            continue
        if line.endswith("\\") and not line.endswith("\\\\"):
            pending = line[:-1]
            continue
        match = re.match(r"((?:[^=:\\]|\\.)*)[=:](.*)", line)
        if not match:
            continue
        key, value = match.group(1).strip(), match.group(2).strip()
        value = _UNICODE_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), value)
        out[key] = value.replace("\\:", ":").replace("\\=", "=").replace("\\\\", "\\")
    return out


def _float(value: str | None, default: float | None = None) -> float | None:
    if value is None or value == "":
        return default
    return float(value)


def read_library(path: Path) -> list[CatalogEntry]:
    """All model entries of one .sh3f library, mapped to the vocabulary (cls None = unused)."""
    library = path.stem
    try:
        with zipfile.ZipFile(path) as zf:
            props = parse_properties(zf.read(PROPERTIES).decode("latin-1"))
    except (OSError, KeyError, zipfile.BadZipFile) as exc:
        raise CatalogError(f"cannot read furniture library {path}: {exc}") from exc
    license_id, license_text = LIBRARY_LICENSES.get(library, ("unknown", props.get("license", "")))
    blocks: dict[str, dict[str, str]] = {}
    for key, value in props.items():
        if "#" in key:
            field_name, index = key.split("#", 1)
            blocks.setdefault(index, {})[field_name] = value
    entries = []
    for index in sorted(blocks, key=lambda i: (len(i), i)):
        b = blocks[index]
        if "model" not in b or "name" not in b or "width" not in b:
            continue  # stray keys such as a lone dropOnTopElevation#-1
        drop = _float(b.get("dropOnTopElevation"))
        rotation = tuple(float(x) for x in b["modelRotation"].split()) if "modelRotation" in b else None
        entry = CatalogEntry(
            library=library,
            index=index,
            catalog_id=b.get("id", f"{library}#{index}"),
            name=b["name"],
            category=b.get("category", ""),
            model=b["model"].lstrip("/"),
            width_cm=float(b["width"]),
            depth_cm=float(b["depth"]),
            height_cm=float(b["height"]),
            elevation_cm=_float(b.get("elevation"), 0.0),
            drop_on_top_cm=drop if drop is not None and drop >= 0 else None,
            door_or_window=b.get("doorOrWindow", "false") == "true",
            model_rotation=rotation,
            creator=b.get("creator", ""),
            license=license_id,
            license_text=license_text,
        )
        mapped = map_catalogue_entry(entry.name, entry.category, entry.height_cm, entry.elevation_cm)
        if mapped is not None:
            entry = _with_class(entry, *mapped)
        entries.append(entry)
    return entries


def _with_class(entry: CatalogEntry, cls: str, noun: str) -> CatalogEntry:
    from dataclasses import replace

    return replace(entry, cls=cls, noun=noun)


def furniture_dir() -> Path:
    return Path(os.environ.get("OV3D_SH3D_FURNITURE", DEFAULT_FURNITURE_DIR))


def library_paths(directory: Path | None = None) -> list[Path]:
    directory = Path(directory) if directory is not None else furniture_dir()
    paths = sorted(directory.glob("*.sh3f"))
    if not paths:
        raise CatalogError(
            f"no Sweet Home 3D furniture libraries (*.sh3f) in {directory}; install them with "
            "'apt-get install -y sweethome3d-furniture' or set OV3D_SH3D_FURNITURE"
        )
    return paths


def read_catalog(directory: Path | None = None) -> list[CatalogEntry]:
    """Every entry of every library, in a stable order (library, index)."""
    return [e for p in library_paths(directory) for e in read_library(p)]
