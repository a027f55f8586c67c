"""Launch ov3d_ros's segment node (and RViz).

    ros2 launch ov3d_ros segment.launch.py cloud_topic:=/camera/depth/points
    ros2 launch ov3d_ros segment.launch.py demo:=true            # the packaged recording
    ros2 launch ov3d_ros segment.launch.py namespace:=robot1 rviz:=false device:=cpu
    ros2 launch ov3d_ros segment.launch.py autostart:=false      # unconfigured, for a lifecycle manager

Arguments given here override the same keys of the config file; arguments left empty keep
the config's value. ``fastdds_profile:=true`` gives the node the shipped Fast DDS profile
for large best-effort clouds (the cloud publisher needs it too, see the file's comment).
"""

from __future__ import annotations

# `launch` and `launch_ros` are imported inside the functions that need them, so the
# argument table and the argument -> parameter mapping below stay importable (and tested)
# on machines without a ROS installation.

PACKAGE = "ov3d_ros"
NODE_NAME = "segment_node"
NODE_EXECUTABLE = "segment_node"

# name -> (default, description). A default of "" means "not given".
ARGUMENTS: dict[str, tuple[str, str]] = {
    "config": ("", "Parameter file (default: the package's config/segment.yaml)."),
    "checkpoint": ("", "Model checkpoint; overrides the config's `checkpoint` (empty: keep it)."),
    "device": ("", "auto | cpu | cuda | cuda:N; overrides the config's `device` (empty: keep it)."),
    "queries": ("", "Names to find, separated by ';'; overrides the config's `queries` (empty: keep it)."),
    "namespace": ("", "Namespace of the node (and of RViz, so its relative topics follow)."),
    "cloud_topic": ("", "Topic of the input PointCloud2, remapped onto ~/cloud (empty: ~/cloud itself)."),
    "input_reliability": ("", "reliable | best_effort | auto; overrides the config (empty: keep it)."),
    "rviz": ("true", "Start RViz with rviz/segment.rviz."),
    "rviz_config": ("", "RViz config (default: the package's rviz/segment.rviz)."),
    "fixed_frame": ("map", "RViz fixed frame."),
    "demo": ("false", "Play the packaged demo recording into the node (ov3d-segment --demo)."),
    "autostart": (
        "true",
        "Configure and activate the (lifecycle) node at start; false leaves it unconfigured "
        "for a lifecycle manager (ros2 lifecycle set /segment_node configure).",
    ),
    "fastdds_profile": ("false", "Give the node config/fastdds_large_clouds.xml (large best-effort clouds)."),
    "log_level": ("info", "Node log level: debug | info | warn | error."),
}

# Launch arguments that set a node parameter of the same name when given.
PARAMETER_ARGUMENTS = ("checkpoint", "device", "queries", "input_reliability")
TRUE_WORDS = ("true", "1", "yes", "on")


def parameter_overrides(values: dict[str, str]) -> dict[str, str]:
    """The node parameters the launch arguments set: only those given (non-empty)."""
    return {name: values[name] for name in PARAMETER_ARGUMENTS if values.get(name, "").strip()}


def is_true(value: str) -> bool:
    return value.strip().lower() in TRUE_WORDS


def node_arguments(values: dict[str, str]) -> list[str]:
    """Command-line arguments of the node process (before --ros-args)."""
    if is_true(values.get("demo", "false")):
        return ["--demo", "--demo-keep-running"]  # the demo needs an active node: autostart does not apply
    return [] if is_true(values.get("autostart", "true")) else ["--no-autostart"]


def cloud_remappings(values: dict[str, str]) -> list[tuple[str, str]]:
    topic = values.get("cloud_topic", "").strip()
    return [("~/cloud", topic)] if topic else []


def _setup(context, *args, **kwargs):
    """Build the actions once the arguments are known (empty ones must not override)."""
    import os

    from ament_index_python.packages import get_package_share_directory
    from launch_ros.actions import Node
    from launch_ros.parameter_descriptions import ParameterValue

    share = get_package_share_directory(PACKAGE)
    values = {name: context.launch_configurations.get(name, default) for name, (default, _) in ARGUMENTS.items()}
    config = values["config"] or os.path.join(share, "config", "segment.yaml")
    # value_type=str: without it launch_ros reads the text as YAML ("1" would become an int).
    overrides = {k: ParameterValue(v, value_type=str) for k, v in parameter_overrides(values).items()}
    env = {}
    if is_true(values["fastdds_profile"]):
        profile = os.path.join(share, "config", "fastdds_large_clouds.xml")
        env = {"FASTRTPS_DEFAULT_PROFILES_FILE": profile, "FASTDDS_DEFAULT_PROFILES_FILE": profile}

    actions = [
        Node(
            package=PACKAGE,
            executable=NODE_EXECUTABLE,
            name=NODE_NAME,
            namespace=values["namespace"],
            parameters=[config, overrides] if overrides else [config],
            remappings=cloud_remappings(values),
            arguments=node_arguments(values),
            ros_arguments=["--log-level", values["log_level"]],
            additional_env=env,
            output="screen",
            emulate_tty=True,
        )
    ]
    if is_true(values["rviz"]):
        rviz_config = values["rviz_config"] or os.path.join(share, "rviz", "segment.rviz")
        actions.append(
            Node(
                package="rviz2",
                executable="rviz2",
                name="rviz2",
                namespace=values["namespace"],
                arguments=["-d", rviz_config, "-f", values["fixed_frame"]],
                output="log",
            )
        )
    return actions


def generate_launch_description():
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction

    declared = [
        DeclareLaunchArgument(name, default_value=default, description=description)
        for name, (default, description) in ARGUMENTS.items()
    ]
    return LaunchDescription([*declared, OpaqueFunction(function=_setup)])
