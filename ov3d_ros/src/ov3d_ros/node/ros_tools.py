"""ov3d-ros-tools: install ROS 2's launch system and ``ros2`` command from Jazzy sources.

The registry's ``ros-jazzy-*`` wheels bring rclpy and message packages but not ``launch``,
``launch_ros`` or ``ros2`` (ros2cli and its verbs). Those are pure-Python ament packages; given
a folder holding their Jazzy sources (this project's tests use ``../shared/ros2``), this command
installs them into the current environment the way their own setup.py files do (so their ament
index entries and ros2cli's verb entry points land in ``sys.prefix``), and builds the one
interface package they need that no wheel ships: ``composition_interfaces`` (``import launch_ros``
fails without it), with the project's interface builder, into ``sys.prefix`` too, where the
wheels' start-up hook already puts ``lib/`` on LD_LIBRARY_PATH.

Their third-party dependencies (osrf-pycommon, argcomplete, psutil, lark) come from the
registry with the ``rostools`` extra. Idempotent: a second run finds everything in place.
With a system ROS 2 Jazzy none of this is needed.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ov3d_ros.checkout import SHARED
from ov3d_ros.node.build_interfaces import BuildError, build

# Folder names of the ament_python packages, in dependency order.
PYTHON_PACKAGES = (
    "launch",
    "launch_xml",
    "launch_yaml",
    "launch_ros",
    "rosidl_runtime_py",
    "ros2cli",
    "ros2pkg",
    "ros2node",
    "ros2topic",
    "ros2service",
    "ros2param",
    "ros2lifecycle",
    "ros2interface",
    "ros2launch",
)
INTERFACE_PACKAGES = ("composition_interfaces",)
SOURCE_ENV = "OV3D_ROS_TOOLS_SOURCE"
# Registry modules the tools import (the `rostools` extra installs them).
THIRD_PARTY = {"osrf_pycommon": "osrf-pycommon", "argcomplete": "argcomplete", "psutil": "psutil", "lark": "lark"}


class ToolsError(RuntimeError):
    """The tools could not be installed; the message says what is missing."""


@dataclass(frozen=True)
class ToolsResult:
    installed: tuple[str, ...]  # Python packages pip installed this time (empty: all were there)
    built: tuple[str, ...]  # interface packages built this time
    seconds: float


def default_source() -> Path:
    """``$OV3D_ROS_TOOLS_SOURCE``, else ``shared/ros2`` beside this checkout."""
    override = os.environ.get(SOURCE_ENV)
    return Path(override) if override else SHARED / "ros2"


def _version_of(folder: Path) -> str | None:
    import xml.etree.ElementTree as ElementTree

    try:
        return ElementTree.parse(folder / "package.xml").getroot().findtext("version")
    except (OSError, ElementTree.ParseError):
        return None


def _installed_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def missing_python_packages(source: Path) -> list[str]:
    """Folders of ``source`` whose package is absent here (or here in another version)."""
    return [name for name in PYTHON_PACKAGES if _installed_version(name) != _version_of(source / name)]


def install(source: Path | None = None, prefix: Path | None = None, *, force: bool = False) -> ToolsResult:
    start = time.monotonic()
    source = (source or default_source()).resolve()
    absent = [name for name in (*PYTHON_PACKAGES, *INTERFACE_PACKAGES) if not (source / name / "package.xml").is_file()]
    if absent:
        raise ToolsError(f"{source} lacks the Jazzy sources of {', '.join(absent)} (set {SOURCE_ENV} or --source)")
    third_party = [wheel for module, wheel in THIRD_PARTY.items() if importlib.util.find_spec(module) is None]
    if third_party:
        raise ToolsError(
            f"missing from the registry: {' '.join(third_party)} (pip install -e '.[rostools]' brings them)"
        )
    built = []
    for name in INTERFACE_PACKAGES:  # before launch_ros is installed, so it can import at once
        try:
            result = build(prefix or Path(sys.prefix), source / name, install_deps=False, force=force)
        except BuildError as exc:
            raise ToolsError(f"building {name} failed: {exc}") from exc
        if result.rebuilt:
            built.append(name)
    wanted = list(PYTHON_PACKAGES) if force else missing_python_packages(source)
    if wanted:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "--quiet",
            *(str(source / name) for name in wanted),
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise ToolsError(
                f"pip install of {', '.join(wanted)} failed (exit {done.returncode}):\n"
                + "\n".join((done.stdout + done.stderr).splitlines()[-20:])
            )
    return ToolsResult(tuple(wanted), tuple(built), time.monotonic() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ov3d-ros-tools",
        description="Install launch, launch_ros and the ros2 command (pkg, launch, topic, param, node, service, "
        "lifecycle, interface) from a folder of their Jazzy sources into this environment, and build "
        "composition_interfaces. Not needed with a system ROS 2.",
    )
    parser.add_argument("--source", type=Path, default=None, help=f"the sources (default: {default_source()})")
    parser.add_argument("--force", action="store_true", help="reinstall and rebuild everything")
    args = parser.parse_args(argv)
    try:
        result = install(args.source, force=args.force)
    except ToolsError as exc:
        print(f"[ov3d-ros-tools] error: {exc}", file=sys.stderr)
        return 1
    did = [f"installed {', '.join(result.installed)}"] if result.installed else []
    did += [f"built {', '.join(result.built)}"] if result.built else []
    print(f"[ov3d-ros-tools] {'; '.join(did) or 'already installed'} ({result.seconds:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
