"""Where a source checkout keeps what no install carries: the repository and ``shared/`` beside it.

Only the defaults of developer commands (benchmarks, the GPU check, building interfaces and the
ROS tools from sources) use these; the node never does.
"""

from __future__ import annotations

import os
from pathlib import Path

# <repository>/ov3d_ros/src/ov3d_ros/checkout.py
REPOSITORY = Path(__file__).resolve().parents[3]
SHARED = REPOSITORY.parent / "shared"


def shared_data() -> Path:
    """The real scans (``shared/data``, or ``$OV3D_SHARED_DATA`` where the data lives elsewhere)."""
    return Path(os.environ.get("OV3D_SHARED_DATA", SHARED / "data"))
