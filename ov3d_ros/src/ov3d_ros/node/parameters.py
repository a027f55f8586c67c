"""The segment node's parameters: one table, declared with descriptors, validated in one place.

Every parameter has a spec (default, description, range or choices, whether it can change
at run time). ``declare_parameters`` turns the table into ROS parameters with
``ParameterDescriptor`` s; ``validate_value`` is the pure-Python check used both by the
set-parameters callback and at start-up; ``NodeSettings`` is the typed view the node reads.
The same table generates nothing else: ``config/segment.yaml`` is checked against it by a test.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from dataclasses import replace as replace_fields
from typing import Any

from ov3d_ros.core.types import QueryError, QuerySet

RELIABILITY_CHOICES = ("reliable", "best_effort", "auto")
DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


@dataclass(frozen=True)
class ParamSpec:
    """One parameter. ``dynamic`` ones may change while the node runs; the others are read-only."""

    name: str
    default: bool | int | float | str
    description: str
    dynamic: bool = False
    low: float | None = None  # inclusive range for int/float
    high: float | None = None
    choices: tuple[str, ...] = ()
    pattern: re.Pattern[str] | None = None
    constraint: str = ""  # human-readable, shown by `ros2 param describe`

    @property
    def kind(self) -> type:
        return type(self.default)


PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec(
        "checkpoint",
        "",
        "Model checkpoint (.safetensors or .pt). Empty: the model shipped in the package.",
        constraint="path to a readable file, or empty",
    ),
    ParamSpec(
        "allow_untrained",
        False,
        "Accept a checkpoint of random weights (marked 'trained: false'). "
        "For plumbing tests only: its labels mean nothing, and the node says so in its log and diagnostics.",
    ),
    ParamSpec(
        "device",
        "auto",
        "Where the network runs: auto (CUDA when available), cpu, cuda or cuda:N.",
        pattern=DEVICE_PATTERN,
        constraint="auto | cpu | cuda | cuda:N",
    ),
    ParamSpec(
        "voxel_size",
        0.0,
        "Voxel edge in metres. 0: the size the checkpoint was trained with.",
        low=0.0,
        high=0.5,
        constraint="0 (checkpoint's) or 0.005..0.5 m",
    ),
    ParamSpec(
        "max_points",
        300_000,
        "Clouds with more points are subsampled (deterministically) to this many.",
        low=1_000,
        high=5_000_000,
    ),
    # GGP: by default the setting calibrated for the checkpoint (model.json "ggp"; GGPConfig's
    # defaults for a checkpoint without one) -- eval, bench and the node agree.
    ParamSpec(
        "ggp_k",
        0,
        "Geometry-guided pooling: neighbours per voxel. 0: the model's calibrated value.",
        low=0,
        high=128,
        constraint="0 (model's) or 1..128",
    ),
    ParamSpec(
        "ggp_tau",
        0.0,
        "Geometry-guided pooling: softmax temperature over affinity cosines. 0: the model's.",
        low=0.0,
        high=10.0,
        constraint="0 (model's) or 0.001..10",
    ),
    ParamSpec(
        "ggp_iterations",
        -1,
        "Geometry-guided pooling: smoothing passes T (0 = off). -1: the model's.",
        low=-1,
        high=100,
        constraint="-1 (model's) or 0..100",
    ),
    ParamSpec(
        "ggp_coarsen",
        0,
        "Geometry-guided pooling: pool on cells this many voxels wide, then back to "
        "voxels (1 = plain GGP). 0: the model's.",
        low=0,
        high=8,
        constraint="0 (model's) or 1..8",
    ),
    ParamSpec(
        "ggp_centering",
        -1.0,
        "Share of each cloud's mean semantic feature removed before pooling and scoring (0 = none). -1: the model's.",
        low=-1.0,
        high=1.0,
        constraint="-1 (model's) or 0..1",
    ),
    ParamSpec(
        "queries",
        "chair; table; monitor",
        "Names to find, separated by ';'. Also settable on ~/query.",
        dynamic=True,
        constraint="1..64 printable names of at most 200 characters",
    ),
    ParamSpec(
        "negatives",
        "wall; floor; ceiling",
        "Names that compete with the queries but are never reported, separated by ';' (may be empty).",
        dynamic=True,
    ),
    ParamSpec(
        "use_background", True, "Also compete against generic phrases (object, things, stuff, texture).", dynamic=True
    ),
    ParamSpec(
        "use_vocabulary",
        True,
        "Also compete against the shipped vocabulary of ~300 indoor things (names "
        "meaning the same as a query left out, near ones counted as it; the model's calibrated rule).",
        dynamic=True,
    ),
    ParamSpec(
        "score_threshold",
        0.0,
        "A point whose best query score is below this is background (0 = off).",
        dynamic=True,
        low=0.0,
        high=1.0,
    ),
    ParamSpec(
        "min_object_points",
        20,
        "Smallest object reported (points); smaller groups stay unlabelled.",
        dynamic=True,
        low=1,
        high=10_000_000,
    ),
    ParamSpec(
        "input_reliability",
        "reliable",
        "QoS reliability of ~/cloud: reliable, best_effort, or auto (match the publishers, as rosbag2).",
        choices=RELIABILITY_CHOICES,
    ),
    ParamSpec(
        "input_depth", 1, "QoS history depth of ~/cloud (the node keeps only the newest cloud anyway).", low=1, high=100
    ),
    ParamSpec(
        "output_decimation", 1, "Publish every n-th point of ~/labeled_cloud (1 = all).", dynamic=True, low=1, high=1000
    ),
    ParamSpec(
        "max_rate_hz",
        0.0,
        "Process at most this many clouds per second; newer ones replace waiting ones (0 = as fast as possible).",
        dynamic=True,
        low=0.0,
        high=1000.0,
    ),
    ParamSpec(
        "target_frame",
        "",
        "Transform clouds into this frame at their stamp (needs tf2_ros). Empty: results stay in the input frame.",
    ),
    ParamSpec("tf_timeout_s", 0.1, "How long to wait for the transform of one cloud.", low=0.0, high=10.0),
)

SPECS: dict[str, ParamSpec] = {spec.name: spec for spec in PARAMETERS}


class ParameterError(ValueError):
    """A parameter value that cannot be used; the message names the parameter and the rule."""


def _number_ok(spec: ParamSpec, value: float) -> str | None:
    if isinstance(value, float) and not math.isfinite(value):
        return f"{spec.name} must be finite, got {value}"
    if spec.low is not None and value < spec.low:
        return f"{spec.name} must be >= {spec.low:g}, got {value}"
    if spec.high is not None and value > spec.high:
        return f"{spec.name} must be <= {spec.high:g}, got {value}"
    return None


def validate_value(name: str, value: Any) -> str | None:
    """Why ``value`` cannot be given to parameter ``name``, or None when it can.

    Pure Python: used by the set-parameters callback, at start-up, and by the tests.
    """
    spec = SPECS.get(name)
    if spec is None:
        return f"unknown parameter {name!r}"
    kind = spec.kind
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)  # YAML "1" for a float parameter is a slip worth forgiving here
    if (kind is bool and not isinstance(value, bool)) or (kind is not bool and isinstance(value, bool)):
        return f"{name} must be {kind.__name__}, got {type(value).__name__} {value!r}"
    if not isinstance(value, kind):
        return f"{name} must be {kind.__name__}, got {type(value).__name__} {value!r}"
    if kind in (int, float):
        if name == "voxel_size" and 0.0 < value < 0.005:
            return f"voxel_size must be 0 (the checkpoint's) or >= 0.005 m, got {value}"
        if name == "ggp_tau" and 0.0 < value < 0.001:
            return f"ggp_tau must be 0 (the model's) or >= 0.001, got {value}"
        if name == "ggp_centering" and -1.0 < value < 0.0:
            return f"ggp_centering must be -1 (the model's) or 0..1, got {value}"
        return _number_ok(spec, value)
    if kind is str:
        if spec.choices and value not in spec.choices:
            return f"{name} must be one of {', '.join(spec.choices)}, got {value!r}"
        if spec.pattern is not None and not spec.pattern.match(value):
            return f"{name} must be {spec.constraint}, got {value!r}"
        if name == "queries":
            try:
                QuerySet.parse(value)
            except QueryError as exc:
                return f"queries: {exc}"
        if name == "negatives" and value.strip():
            try:
                QuerySet.parse("x", negatives=value)
            except QueryError as exc:
                return f"negatives: {exc}"
    return None


def validate_changes(changes: Mapping[str, Any], *, running: bool) -> str | None:
    """Check a batch of changes; at run time read-only parameters are refused too."""
    for name, value in changes.items():
        spec = SPECS.get(name)
        if spec is None:
            continue  # parameters this table does not own (use_sim_time, qos overrides, ...)
        if running and not spec.dynamic:
            return f"{name} is read-only while the node runs; set it at start-up (config or launch argument)"
        problem = validate_value(name, value)
        if problem:
            return problem
    return None


@dataclass(frozen=True)
class NodeSettings:
    """Typed snapshot of all parameters (see PARAMETERS for meanings)."""

    checkpoint: str
    allow_untrained: bool
    device: str
    voxel_size: float
    max_points: int
    ggp_k: int
    ggp_tau: float
    ggp_iterations: int
    ggp_coarsen: int
    ggp_centering: float
    queries: str
    negatives: str
    use_background: bool
    use_vocabulary: bool
    score_threshold: float
    min_object_points: int
    input_reliability: str
    input_depth: int
    output_decimation: int
    max_rate_hz: float
    target_frame: str
    tf_timeout_s: float

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> NodeSettings:
        """Defaults overridden by ``values``; raises ParameterError on the first bad one."""
        merged: dict[str, Any] = {spec.name: spec.default for spec in PARAMETERS}
        merged.update({k: v for k, v in values.items() if k in SPECS})
        for name, value in merged.items():
            problem = validate_value(name, value)
            if problem:
                raise ParameterError(problem)
            if SPECS[name].kind is float:
                merged[name] = float(value)
        return cls(**merged)

    def replace(self, **changes: Any) -> NodeSettings:
        return NodeSettings.from_values({**self.as_dict(), **changes})

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def query_set(self) -> QuerySet:
        """The QuerySet the parameters describe, object size included (raises QueryError like QuerySet.parse)."""
        return QuerySet.parse(
            self.queries,
            negatives=self.negatives,
            threshold=self.score_threshold if self.score_threshold > 0.0 else None,
            background=self.use_background,
            vocabulary=self.use_vocabulary,
            min_object_points=self.min_object_points,
        )

    def ggp_setting(self, model_ggp: Any) -> Any:
        """The GGP the parameters ask for: ``model_ggp`` (a GGPConfig, the model's calibrated setting)
        with the fields set here replaced; 0 / 0 / -1 / 0 / -1 keep the model's k / tau / iterations /
        coarsen / centering."""
        given = (
            ("k", self.ggp_k or None),
            ("tau", self.ggp_tau or None),
            ("iterations", self.ggp_iterations if self.ggp_iterations >= 0 else None),
            ("coarsen", self.ggp_coarsen or None),
            ("centering", self.ggp_centering if self.ggp_centering >= 0 else None),
        )
        return replace_fields(model_ggp, **{name: value for name, value in given if value is not None})


assert {f.name for f in fields(NodeSettings)} == set(SPECS), "NodeSettings and PARAMETERS disagree"


# --- rclpy side ---------------------------------------------------------------------------


def descriptor_for(spec: ParamSpec) -> Any:
    """The ParameterDescriptor that tells ROS tools (and rclpy's own checks) about ``spec``."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType

    type_of = {
        bool: ParameterType.PARAMETER_BOOL,
        int: ParameterType.PARAMETER_INTEGER,
        float: ParameterType.PARAMETER_DOUBLE,
        str: ParameterType.PARAMETER_STRING,
    }[spec.kind]
    constraint = spec.constraint or (f"one of: {', '.join(spec.choices)}" if spec.choices else "")
    descriptor = ParameterDescriptor(
        name=spec.name,
        type=type_of,
        description=spec.description,
        additional_constraints=constraint,
        read_only=not spec.dynamic,
    )
    if spec.kind is int and spec.low is not None and spec.high is not None:
        descriptor.integer_range = [IntegerRange(from_value=int(spec.low), to_value=int(spec.high), step=0)]
    if spec.kind is float and spec.low is not None and spec.high is not None:
        descriptor.floating_point_range = [
            FloatingPointRange(from_value=float(spec.low), to_value=float(spec.high), step=0.0)
        ]
    return descriptor


def declare_parameters(node: Any, specs: Iterable[ParamSpec] = PARAMETERS) -> NodeSettings:
    """Declare every parameter on ``node`` and return their start-up values, validated.

    Raises ParameterError naming the offending parameter (the node then refuses to start).
    rclpy itself rejects start-up values outside a descriptor's range with a less helpful
    message, so values are declared, then checked here with ours.
    """
    from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException

    values: dict[str, Any] = {}
    for spec in specs:
        try:
            param = node.declare_parameter(spec.name, spec.default, descriptor_for(spec))
        except InvalidParameterTypeException as exc:
            raise ParameterError(
                f"{spec.name} must be {spec.kind.__name__} (write 1.0, not 1, for a float): {exc}"
            ) from exc
        except InvalidParameterValueException as exc:
            raise ParameterError(f"{spec.name}: {exc}") from exc
        values[spec.name] = param.value
    return NodeSettings.from_values(values)


def set_parameters_result(parameters: Iterable[Any], *, running: bool = True) -> Any:
    """Body of an ``add_on_set_parameters_callback``: accept or refuse a batch with a reason."""
    from rcl_interfaces.msg import SetParametersResult

    problem = validate_changes({p.name: p.value for p in parameters}, running=running)
    return SetParametersResult(successful=problem is None, reason=problem or "")
