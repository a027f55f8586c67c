"""Quality of service for the node's topics, and the input subscription that gets it right.

The trap this module exists for (Fast DDS defaults, two processes on one machine): BEST_EFFORT
PointCloud2 messages above about 0.5 MB, the default shared-memory segment, are lost -- most of
them, not the odd one -- while smaller clouds arrive, and RELIABLE on both sides delivers clouds
many megabytes large. ``test/node/test_fastdds_profile.py`` reproduces the loss and checks the
profile's fix. Hence:
* the input defaults to RELIABLE, which best-effort publishers cannot match: that case is an
  "incompatible QoS" event, logged here as an error with the fix;
* ``auto`` reads the publishers' offered QoS and requests what all of them can serve, as
  rosbag2 does, and re-adapts when an incompatible publisher appears later;
* large best-effort clouds need the shipped Fast DDS profile (config/fastdds_large_clouds.xml);
  lost samples are counted (``message_lost`` events) so diagnostics can show them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks, UnsupportedEventTypeError
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_policy_name_from_kind,
)

# Queries: late joiners get the last one (a node started after the query was sent).
QUERY_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)
# Labelled clouds: reliable so large ones arrive; volatile so a late RViz does not pull the
# last multi-megabyte cloud through every new connection.
CLOUD_OUT_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)
# Markers and objects are small: latch the last result for late joiners (RViz started later).
RESULT_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)

FASTDDS_PROFILE_HINT = (
    "large BEST_EFFORT clouds are dropped by Fast DDS's default transports: publish RELIABLE, or set "
    "FASTRTPS_DEFAULT_PROFILES_FILE (Fast DDS 3: FASTDDS_DEFAULT_PROFILES_FILE) to the shipped "
    "config/fastdds_large_clouds.xml in both processes"
)


def input_qos(reliability: str, depth: int) -> QoSProfile:
    """QoS of ~/cloud for an explicit reliability ('reliable' or 'best_effort')."""
    policy = {"reliable": ReliabilityPolicy.RELIABLE, "best_effort": ReliabilityPolicy.BEST_EFFORT}.get(reliability)
    if policy is None:
        raise ValueError(f"reliability must be 'reliable' or 'best_effort', got {reliability!r}")
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=policy, durability=DurabilityPolicy.VOLATILE
    )


def adapt_to_offers(offered: Sequence[QoSProfile], depth: int) -> tuple[QoSProfile, str]:
    """The subscription QoS every offered publisher QoS can serve (rosbag2's rule).

    RELIABLE only when every publisher is reliable, TRANSIENT_LOCAL only when every one is;
    otherwise the weaker policy, which matches all of them. Returns the profile and a line
    explaining the choice for the log.
    """
    if not offered:
        return input_qos("reliable", depth), "no publishers yet: requesting RELIABLE"
    reliable = [q.reliability == ReliabilityPolicy.RELIABLE for q in offered]
    transient = [q.durability == DurabilityPolicy.TRANSIENT_LOCAL for q in offered]
    profile = QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.RELIABLE if all(reliable) else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if all(transient) else DurabilityPolicy.VOLATILE,
    )
    why = f"{len(offered)} publisher(s): {sum(reliable)} reliable, {len(offered) - sum(reliable)} best effort"
    if any(reliable) and not all(reliable):
        why += " (mixed: requesting BEST_EFFORT so all of them match)"
    return profile, why


def describe(qos: QoSProfile) -> str:
    return f"{qos.reliability.name}/{qos.durability.name}/depth {qos.depth}"


def publisher_event_callbacks(logger: Any, topic: str) -> PublisherEventCallbacks:
    """Log subscribers that cannot match one of our publishers (e.g. a TRANSIENT_LOCAL request
    on a VOLATILE topic)."""

    def incompatible(event: Any) -> None:
        policy = qos_policy_name_from_kind(event.last_policy_kind)
        logger.error(
            f"a subscriber of {topic} requests QoS this node does not offer ({policy} incompatible, "
            f"{event.total_count} so far); it will receive nothing until it matches"
        )

    return PublisherEventCallbacks(incompatible_qos=incompatible)


@dataclass
class InputStats:
    lost: int = 0  # samples the DDS layer knows it lost (best effort gaps)
    incompatible: int = 0  # publishers that could not be matched


class CloudSubscription:
    """The ~/cloud subscription, with fixed or publisher-matched ('auto') reliability.

    In 'auto' mode nothing is subscribed until a publisher is seen (polled every
    ``poll_s``); when a publisher turns up later that the current QoS cannot match, the
    subscription is re-created with a QoS that matches everyone.
    """

    def __init__(
        self,
        node: Any,
        msg_type: type,
        topic: str,
        callback: Callable[[Any], None],
        *,
        reliability: str,
        depth: int,
        callback_group: Any = None,
        poll_s: float = 0.5,
    ) -> None:
        self._node = node
        self._msg_type = msg_type
        self._topic = topic
        self._callback = callback
        self._reliability = reliability
        self._depth = depth
        self._group = callback_group
        self._logger = node.get_logger()
        self.stats = InputStats()
        self.subscription: Any = None
        self.qos: QoSProfile | None = None
        self._readapt = False
        self._timer = None
        if reliability == "auto":
            self._timer = node.create_timer(poll_s, self._poll, callback_group=callback_group)
            self._poll()
        else:
            self._subscribe(input_qos(reliability, depth), f"input_reliability={reliability}")

    def close(self) -> None:
        """Unsubscribe and stop polling (the node's deactivate); the object is not reused."""
        if self._timer is not None:
            self._node.destroy_timer(self._timer)
            self._timer = None
        if self.subscription is not None:
            self._node.destroy_subscription(self.subscription)
            self.subscription = None

    @property
    def resolved_topic(self) -> str:
        return self.subscription.topic_name if self.subscription is not None else self._topic

    def _offers(self) -> list[QoSProfile]:
        name = self._node.resolve_topic_name(self._topic)
        return [info.qos_profile for info in self._node.get_publishers_info_by_topic(name)]

    def _poll(self) -> None:
        if self.subscription is not None and not self._readapt:
            return
        offers = self._offers()
        if not offers:
            return
        qos, why = adapt_to_offers(offers, self._depth)
        if self.subscription is not None:
            if describe(qos) == describe(self.qos):
                self._readapt = False
                return
            self._node.destroy_subscription(self.subscription)
            self.subscription = None
        self._readapt = False
        self._subscribe(qos, f"matched to {why}")

    def _subscribe(self, qos: QoSProfile, why: str) -> None:
        events = SubscriptionEventCallbacks(incompatible_qos=self._on_incompatible, message_lost=self._on_lost)
        try:
            self.subscription = self._node.create_subscription(
                self._msg_type,
                self._topic,
                self._callback,
                qos,
                callback_group=self._group,
                event_callbacks=events,
            )
        except UnsupportedEventTypeError:  # an RMW without message_lost events
            events = SubscriptionEventCallbacks(incompatible_qos=self._on_incompatible)
            self.subscription = self._node.create_subscription(
                self._msg_type,
                self._topic,
                self._callback,
                qos,
                callback_group=self._group,
                event_callbacks=events,
            )
        self.qos = qos
        self._logger.info(f"subscribed to {self.resolved_topic} with {describe(qos)} ({why})")
        if qos.reliability == ReliabilityPolicy.BEST_EFFORT:
            self._logger.warning(f"{self.resolved_topic} is BEST_EFFORT: {FASTDDS_PROFILE_HINT}")

    def _on_incompatible(self, event: Any) -> None:
        self.stats.incompatible = event.total_count
        policy = qos_policy_name_from_kind(event.last_policy_kind)
        if self._reliability == "auto":
            self._logger.warning(
                f"a publisher of {self.resolved_topic} is incompatible ({policy}); re-matching the subscription"
            )
            self._readapt = True  # the timer re-creates it; never destroy inside its own event
            return
        hint = (
            " The publisher is probably BEST_EFFORT: set input_reliability to best_effort or auto, and see "
            "config/fastdds_large_clouds.xml for large clouds."
            if policy == "RELIABILITY"
            else ""
        )
        self._logger.error(
            f"INCOMPATIBLE QoS on {self.resolved_topic}: a publisher cannot serve this subscription's "
            f"{policy} ({describe(self.qos)}); NO clouds from it will arrive ({event.total_count} so far).{hint}"
        )

    def _on_lost(self, event: Any) -> None:
        self.stats.lost = event.total_count
        self._logger.warning(
            f"{event.total_count} cloud(s) lost in transport on {self.resolved_topic}; {FASTDDS_PROFILE_HINT}",
            throttle_duration_sec=10.0,
        )
