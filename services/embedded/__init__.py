"""The embedded default of `finsent run`: the supervised services, the demo feed, the live tail."""

from services.embedded.demo_feed import (
    DEMO_SOURCE,
    MIN_ITEMS,
    DemoFeed,
    DemoTimeline,
    anchor_for,
    anchor_from_burst_start,
    demo_feed,
    demo_timeline,
)
from services.embedded.scored_tail import ScoredTail
from services.embedded.service_process import ServiceProcess

__all__ = [
    "DEMO_SOURCE",
    "MIN_ITEMS",
    "DemoFeed",
    "DemoTimeline",
    "ScoredTail",
    "ServiceProcess",
    "anchor_for",
    "anchor_from_burst_start",
    "demo_feed",
    "demo_timeline",
]
