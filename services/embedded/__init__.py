"""The embedded default of `finsent run`: the supervisor, the supervised services, the demo
feed, the live tail.

`supervisor.run_pipeline` is the run itself; `demo_feed` (the layout, pure), `demo_run`,
`demo_setup` and `demo_watch` the demo; `console` what is printed; `errors` why a run stops.
"""

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
from services.embedded.errors import DemoFailed, RunError
from services.embedded.scored_tail import ScoredTail
from services.embedded.service_process import ServiceProcess

__all__ = [
    "DEMO_SOURCE",
    "MIN_ITEMS",
    "DemoFailed",
    "DemoFeed",
    "DemoTimeline",
    "RunError",
    "ScoredTail",
    "ServiceProcess",
    "anchor_for",
    "anchor_from_burst_start",
    "demo_feed",
    "demo_timeline",
]
