"""package.xml of ov3d_ros and ov3d_msgs: siblings at the repository root, every runtime dependency listed."""

from __future__ import annotations

from pathlib import Path

from catkin_pkg.package import parse_package

REPO = Path(__file__).resolve().parents[2]


def _exec_depends(path: Path, env: dict[str, str]) -> set[str]:
    package = parse_package(str(path))
    package.evaluate_conditions(env)
    return {d.name for d in package.exec_depends if d.evaluated_condition}


def test_ov3d_ros_lists_what_its_code_imports():
    depends = _exec_depends(REPO / "ov3d_ros" / "package.xml", {})
    needed = {
        "rclpy",
        "rcl_interfaces",
        "lifecycle_msgs",
        "ament_index_python",
        "std_msgs",
        "sensor_msgs",
        "geometry_msgs",
        "visualization_msgs",
        "diagnostic_msgs",
        "ov3d_msgs",
        "launch",
        "launch_ros",
        "python3-numpy",
        "python3-scipy",
        "python3-yaml",
        "python3-matplotlib",
        "rviz2",
    }
    assert needed <= depends, needed - depends


def test_a_headless_install_leaves_rviz_out_but_keeps_launch():
    depends = _exec_depends(REPO / "ov3d_ros" / "package.xml", {"OV3D_HEADLESS": "1"})
    assert "rviz2" not in depends and {"launch", "launch_ros", "rclpy"} <= depends


def test_ov3d_msgs_is_a_sibling_interface_package_with_the_service():
    package = parse_package(str(REPO / "ov3d_msgs" / "package.xml"))
    assert package.name == "ov3d_msgs" and package.get_build_type() == "ament_cmake"
    assert "rosidl_interface_packages" in {g.name for g in package.member_of_groups}
    cmake = (REPO / "ov3d_msgs" / "CMakeLists.txt").read_text()
    for interface in ("msg/Object.msg", "msg/ObjectArray.msg", "msg/Query.msg", "srv/SetQuery.srv"):
        assert (REPO / "ov3d_msgs" / interface).is_file() and f'"{interface}"' in cmake
    assert not (REPO / "msg").exists()
