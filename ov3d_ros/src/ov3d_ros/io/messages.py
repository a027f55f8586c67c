"""Message classes to build PointCloud2 with: rclpy's, rosbags', or plain dataclasses.

The io layer reads any object that *looks* like a ``sensor_msgs/msg/PointCloud2`` (duck typing),
and builds messages through a :class:`MessageTypes` bundle so one encoder serves the live node
(rclpy classes), bag files (rosbags typestore classes) and ROS-free code (the plain dataclasses
below, which carry the same attribute names).
"""

from __future__ import annotations

import array
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

NS_PER_S = 1_000_000_000


# --- plain stand-ins with the ROS attribute names -------------------------------------------
@dataclass
class Time:
    sec: int = 0
    nanosec: int = 0


@dataclass
class Header:
    stamp: Time = field(default_factory=Time)
    frame_id: str = ""


@dataclass
class PointField:
    INT8 = 1
    UINT8 = 2
    INT16 = 3
    UINT16 = 4
    INT32 = 5
    UINT32 = 6
    FLOAT32 = 7
    FLOAT64 = 8

    name: str = ""
    offset: int = 0
    datatype: int = 0
    count: int = 1


@dataclass
class PointCloud2:
    header: Header = field(default_factory=Header)
    height: int = 0
    width: int = 0
    fields: list[PointField] = field(default_factory=list)
    is_bigendian: bool = False
    point_step: int = 0
    row_step: int = 0
    data: bytes = b""
    is_dense: bool = False


# --- bundles ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class MessageTypes:
    """The classes an encoder needs, plus how that family stores ``data``.

    ``wrap_data`` turns a contiguous 1-D uint8 array into what the family's ``data`` field holds
    without validation overhead (rclpy's setter checks every byte of a ``bytes`` value in Python
    but takes an ``array.array('B')`` as is).
    """

    name: str
    point_cloud2: type
    point_field: type
    header: type
    time: type
    wrap_data: Callable[[np.ndarray], Any]


def _to_array_array(buf: np.ndarray) -> array.array:
    out = array.array("B")
    out.frombytes(buf.data)  # one memcpy; rclpy serialises array('B') without per-byte checks
    return out


def _to_bytes(buf: np.ndarray) -> bytes:
    return buf.tobytes()


def _as_is(buf: np.ndarray) -> np.ndarray:
    return buf


def plain_message_types() -> MessageTypes:
    """Dataclasses with the ROS attribute names; no ROS install needed."""
    return MessageTypes("plain", PointCloud2, PointField, Header, Time, _to_bytes)


@lru_cache(maxsize=1)
def rclpy_message_types() -> MessageTypes:
    """rclpy's generated classes (raises ImportError where ROS 2 Python messages are missing)."""
    from builtin_interfaces.msg import Time as RosTime
    from sensor_msgs.msg import PointCloud2 as RosPointCloud2
    from sensor_msgs.msg import PointField as RosPointField
    from std_msgs.msg import Header as RosHeader

    return MessageTypes("rclpy", RosPointCloud2, RosPointField, RosHeader, RosTime, _to_array_array)


def rosbags_message_types(typestore: Any = None) -> MessageTypes:
    """The classes of a rosbags typestore (ROS 2 Jazzy by default), as used to write bags."""
    if typestore is None:
        typestore = jazzy_typestore()
    types = typestore.types
    return MessageTypes(
        "rosbags",
        types["sensor_msgs/msg/PointCloud2"],
        types["sensor_msgs/msg/PointField"],
        types["std_msgs/msg/Header"],
        types["builtin_interfaces/msg/Time"],
        _as_is,
    )


@lru_cache(maxsize=1)
def jazzy_typestore() -> Any:
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_JAZZY)


@lru_cache(maxsize=1)
def rclpy_available() -> bool:
    # Cached: a failed import is retried (and costs a path search) on every attempt otherwise.
    try:
        rclpy_message_types()
    except ImportError:
        return False
    return True


def default_message_types() -> MessageTypes:
    """rclpy's classes where importable (what a node publishes), else the plain dataclasses."""
    return rclpy_message_types() if rclpy_available() else plain_message_types()


# --- stamps ----------------------------------------------------------------------------------
def ns_to_stamp(stamp_ns: int) -> tuple[int, int]:
    """Nanoseconds -> (sec, nanosec) with 0 <= nanosec < 1e9, as builtin_interfaces/Time wants."""
    sec, nanosec = divmod(int(stamp_ns), NS_PER_S)
    return sec, nanosec


def stamp_to_ns(stamp: Any) -> int:
    """builtin_interfaces/Time (any object with sec and nanosec) -> integer nanoseconds."""
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def make_header(types: MessageTypes, frame_id: str, stamp_ns: int) -> Any:
    sec, nanosec = ns_to_stamp(stamp_ns)
    return types.header(stamp=types.time(sec=sec, nanosec=nanosec), frame_id=str(frame_id))
