"""launch/segment.launch.py: its arguments map to real node parameters; it loads under `launch`."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ov3d_ros.node.parameters import SPECS, validate_value

LAUNCH_FILE = Path(__file__).resolve().parents[2] / "ov3d_ros" / "launch" / "segment.launch.py"


def _load_module():
    spec = importlib.util.spec_from_file_location("ov3d_segment_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_arguments_the_issue_asks_for():
    launch_file = _load_module()
    assert {"config", "checkpoint", "device", "namespace", "cloud_topic", "rviz", "demo", "autostart"} <= set(
        launch_file.ARGUMENTS
    )
    assert launch_file.ARGUMENTS["rviz"][0] == "true" and launch_file.ARGUMENTS["demo"][0] == "false"
    assert launch_file.ARGUMENTS["autostart"][0] == "true"


def test_parameter_arguments_are_real_parameters():
    launch_file = _load_module()
    for name in launch_file.PARAMETER_ARGUMENTS:
        assert name in SPECS, f"launch argument {name} names no node parameter"
        assert name in launch_file.ARGUMENTS


def test_only_given_arguments_override_the_config():
    launch_file = _load_module()
    defaults = {name: default for name, (default, _) in launch_file.ARGUMENTS.items()}
    assert launch_file.parameter_overrides(defaults) == {}
    given = dict(defaults, checkpoint="/models/student", device="cuda:1", queries="red mug; sofa")
    overrides = launch_file.parameter_overrides(given)
    assert overrides == {"checkpoint": "/models/student", "device": "cuda:1", "queries": "red mug; sofa"}
    for name, value in overrides.items():
        assert validate_value(name, value) is None


def test_remapping_rviz_and_demo_switches():
    launch_file = _load_module()
    assert launch_file.cloud_remappings({"cloud_topic": ""}) == []
    assert launch_file.cloud_remappings({"cloud_topic": "/camera/points"}) == [("~/cloud", "/camera/points")]
    assert launch_file.node_arguments({"demo": "true"})[0] == "--demo"
    assert launch_file.node_arguments({"demo": "false"}) == []
    assert launch_file.node_arguments({"demo": "false", "autostart": "false"}) == ["--no-autostart"]
    assert launch_file.is_true("True") and not launch_file.is_true("false")


def test_loaded_by_launch(ros2_tools):
    # (`import launch` alone can find this repository's launch/ folder as a namespace package)
    import launch_ros.actions  # noqa: F401
    from launch import LaunchContext, LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch.launch_description_sources import PythonLaunchDescriptionSource

    source = PythonLaunchDescriptionSource(str(LAUNCH_FILE))
    description = source.get_launch_description(LaunchContext())
    assert isinstance(description, LaunchDescription)
    declared = {a.name for a in description.entities if isinstance(a, DeclareLaunchArgument)}
    launch_file = _load_module()
    assert declared == set(launch_file.ARGUMENTS)
    assert any(isinstance(a, OpaqueFunction) for a in description.entities)
    from ament_index_python.packages import get_package_share_directory

    assert (Path(get_package_share_directory("ov3d_ros")) / "launch" / "segment.launch.py").is_file()
    context = LaunchContext()
    context.launch_configurations.update({name: d for name, (d, _) in launch_file.ARGUMENTS.items()})
    context.launch_configurations.update({"device": "cpu", "rviz": "false"})
    actions = launch_file._setup(context)
    assert len(actions) == 1  # rviz:=false
