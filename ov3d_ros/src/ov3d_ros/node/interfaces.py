"""Make the ov3d_msgs interfaces importable, wherever they were built, or say why not.

Three situations:
* a sourced ROS 2 workspace built ov3d_msgs with colcon: plain ``import ov3d_msgs`` works;
* a pip install ran ``ov3d-build-msgs``: the package sits in a prefix that is on neither
  ``sys.path`` nor ``LD_LIBRARY_PATH``;
* nothing built it: the node falls back to standard messages (MarkerArray + JSON).

The prefix case needs more than ``sys.path``. The dynamic loader reads LD_LIBRARY_PATH once,
at process start, so setting it later does not help ``dlopen``. Measured with the registry's
rclpy wheels: with only ``sys.path`` set, ``from ov3d_msgs.msg import ObjectArray`` works but
creating a publisher fails ("Could not import 'rosidl_typesupport_c'", or with an RPATH build
"invalid allocator") because rosidl's C type support dispatch looks up the
``ov3d_msgs__rosidl_typesupport_{fastrtps,introspection}_c`` libraries by name. Preloading
every ``libov3d_msgs__*.so`` of the prefix with ``RTLD_GLOBAL`` (dependencies first) makes
those look-ups find the already-loaded libraries; publish/subscribe then works over Fast DDS.
"""

from __future__ import annotations

import ctypes
import importlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from ov3d_ros.node.build_interfaces import PACKAGE, PREFIX_ENV, default_prefix, find_source, read_stamp, source_digest

# Load order: each library only needs ones earlier in the list (and the ROS libraries the
# process already has). The build sets an RPATH too, so the order is belt and braces.
_LIBRARY_ORDER = (
    "rosidl_generator_c",
    "rosidl_typesupport_introspection_c",
    "rosidl_typesupport_fastrtps_c",
    "rosidl_typesupport_c",
    "rosidl_generator_py",
    "rosidl_typesupport_cpp",
    "rosidl_typesupport_introspection_cpp",
    "rosidl_typesupport_fastrtps_cpp",
)


@dataclass(frozen=True)
class InterfaceStatus:
    """Whether ov3d_msgs can be used in this process, from where, and if not, why."""

    available: bool
    origin: str  # "environment" (colcon / sourced workspace), the prefix path, or "" when unavailable
    reason: str = ""  # one line for the log when unavailable
    stale: bool = False  # built from older .msg files than this checkout's


_status: InterfaceStatus | None = None


def _python_dir(prefix: Path) -> Path:
    return prefix / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"


def _check_type_support() -> None:
    """Import the messages and their C type support, as creating a publisher would."""
    from rclpy.type_support import check_for_type_support

    msg = importlib.import_module(f"{PACKAGE}.msg")
    for name in ("Object", "ObjectArray", "Query"):
        check_for_type_support(getattr(msg, name))
    check_for_type_support(importlib.import_module(f"{PACKAGE}.srv").SetQuery)


def _forget_failed_import() -> None:
    for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
        del sys.modules[name]
    importlib.invalidate_caches()


def _preload(prefix: Path) -> None:
    lib = prefix / "lib"
    for part in _LIBRARY_ORDER:
        path = lib / f"lib{PACKAGE}__{part}.so"
        if path.exists():
            ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)


def _prepend_env(name: str, value: str) -> None:
    parts = [p for p in os.environ.get(name, "").split(os.pathsep) if p]
    if value not in parts:
        os.environ[name] = os.pathsep.join([value, *parts])


def _is_stale(prefix: Path) -> bool:
    try:
        return read_stamp(prefix).get("digest") not in (None, source_digest(find_source()))
    except Exception:  # no checkout to compare with (wheel install): cannot tell
        return False


def load_ov3d_msgs(prefix: Path | None = None, *, refresh: bool = False) -> InterfaceStatus:
    """Make ``ov3d_msgs`` importable if it was built; never raises. The answer is cached."""
    global _status
    if _status is not None and not refresh:
        return _status
    try:
        import rclpy.type_support  # noqa: F401
    except ImportError as exc:
        _status = InterfaceStatus(False, "", f"rclpy is not importable ({exc})")
        return _status

    try:  # a sourced workspace, or a prefix already set up
        _check_type_support()
        _status = InterfaceStatus(True, "environment")
        return _status
    except Exception as exc:  # ImportError, UnsupportedTypeSupport, ...
        first_error = exc
        _forget_failed_import()

    prefix = (prefix or default_prefix()).resolve()
    python_dir = _python_dir(prefix)
    if not (python_dir / PACKAGE).is_dir():
        _status = InterfaceStatus(
            False,
            "",
            f"ov3d_msgs is not built (not importable: {first_error}; nothing in {prefix}); "
            f"run `ov3d-build-msgs` (pip install) or build msg/ with colcon",
        )
        return _status
    try:
        _preload(prefix)
        if str(python_dir) not in sys.path:
            sys.path.insert(0, str(python_dir))
        # For child processes and for look-ups that do read the variables at run time.
        _prepend_env("LD_LIBRARY_PATH", str(prefix / "lib"))
        _prepend_env("AMENT_PREFIX_PATH", str(prefix))
        _check_type_support()
    except Exception as exc:
        _forget_failed_import()
        _status = InterfaceStatus(
            False,
            "",
            f"ov3d_msgs in {prefix} could not be loaded ({type(exc).__name__}: {exc}); "
            f"rebuild with `ov3d-build-msgs --force`",
        )
        return _status
    _status = InterfaceStatus(True, str(prefix), stale=_is_stale(prefix))
    return _status


def ov3d_msgs() -> ModuleType | None:
    """The ``ov3d_msgs.msg`` module when the interfaces are usable, else None."""
    return importlib.import_module(f"{PACKAGE}.msg") if load_ov3d_msgs().available else None


def ov3d_srvs() -> ModuleType | None:
    """The ``ov3d_msgs.srv`` module (SetQuery) when the interfaces are usable, else None."""
    return importlib.import_module(f"{PACKAGE}.srv") if load_ov3d_msgs().available else None


__all__ = ["PREFIX_ENV", "InterfaceStatus", "load_ov3d_msgs", "ov3d_msgs", "ov3d_srvs"]
