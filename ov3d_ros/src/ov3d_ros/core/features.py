"""The student's per-voxel input features, by name, so that training and inference agree.

A checkpoint records ``input_features`` (a name from :data:`FEATURE_SETS`); the training code
and the Segmenter both call :func:`input_features` with that name. Changing what a name means
would silently break every checkpoint trained with it: add a new name instead.

Sets (channels in order):

* ``"rgb_height"`` (4, default): colour mapped to [-1, 1] (3), height above the floor in metres
  divided by :data:`HEIGHT_SCALE` (1). Height is a strong cue indoors (floor, table, ceiling
  lamp) and, measured from the scan's own floor, does not depend on where the map origin is.
* ``"rgb_height_normals"`` (7): the above plus the unit normal (3) -- for clouds that carry normals.
* ``"rgb"`` (3): colour only, for clouds whose vertical axis is unknown.

Floor level: the 1st percentile of voxel-centre z (z up, ROS REP-103), so a few stray points
below the floor do not move it; callers that know it (a robot on a mapped floor) pass ``floor_z``.
Missing colour (a depth-only cloud) becomes mid-grey 0 with a :class:`MissingInputWarning`: the
network still runs, but the caller learns its answers are degraded. Missing normals for a set
that needs them is an error: guessing normals silently would hide a wrong pipeline.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from .voxel import Voxels

HEIGHT_SCALE = 2.0  # metres; rooms are ~2.5 m high, so the channel stays within ~[-0.1, 1.5]
FLOOR_PERCENTILE = 1.0
DEFAULT_FEATURES = "rgb_height"


class MissingInputWarning(UserWarning):
    """The cloud lacks an input the network was trained with (e.g. colour); a neutral value is used."""


@dataclass(frozen=True)
class FeatureSet:
    name: str
    channels: int
    uses: tuple[str, ...]  # "colors", "height", "normals" in channel order


FEATURE_SETS: dict[str, FeatureSet] = {
    "rgb_height": FeatureSet("rgb_height", 4, ("colors", "height")),
    "rgb_height_normals": FeatureSet("rgb_height_normals", 7, ("colors", "height", "normals")),
    "rgb": FeatureSet("rgb", 3, ("colors",)),
}


def feature_set(name: str) -> FeatureSet:
    try:
        return FEATURE_SETS[name]
    except KeyError:
        raise ValueError(f"unknown input feature set {name!r}; known: {', '.join(FEATURE_SETS)}") from None


def estimate_floor_z(centers: np.ndarray) -> float:
    """Robust floor height: a low percentile of the voxel centres' z (0 for an empty cloud)."""
    if len(centers) == 0:
        return 0.0
    return float(np.percentile(centers[:, 2], FLOOR_PERCENTILE))


def input_features(voxels: Voxels, name: str = DEFAULT_FEATURES, *, floor_z: float | None = None) -> np.ndarray:
    """(V, channels) float32 network input for ``voxels`` under feature set ``name``."""
    spec = feature_set(name)
    parts: list[np.ndarray] = []
    count = voxels.num_voxels
    for use in spec.uses:
        if use == "colors":
            if voxels.colors is None:
                warnings.warn(
                    f"input features {name!r} use colour but the cloud has none; using neutral grey "
                    "(segmentation quality will suffer)",
                    MissingInputWarning,
                    stacklevel=2,
                )
                parts.append(np.zeros((count, 3), np.float32))
            else:
                parts.append(voxels.colors.astype(np.float32) * 2.0 - 1.0)
        elif use == "height":
            floor = estimate_floor_z(voxels.centers) if floor_z is None else float(floor_z)
            parts.append(((voxels.centers[:, 2:3] - floor) / HEIGHT_SCALE).astype(np.float32))
        elif use == "normals":
            if voxels.normals is None:
                raise ValueError(
                    f"input features {name!r} need normals but the cloud has none; "
                    "send normal_x/normal_y/normal_z fields or use a checkpoint trained on 'rgb_height'"
                )
            parts.append(voxels.normals.astype(np.float32))
    out = np.concatenate(parts, axis=1) if parts else np.zeros((count, 0), np.float32)
    return np.ascontiguousarray(out, dtype=np.float32)
