"""The embedded default of `finsent run`: the supervised services, the demo feed, the live tail."""

from services.embedded.demo_feed import DEMO_SOURCE, demo_items
from services.embedded.scored_tail import ScoredTail
from services.embedded.service_process import ServiceProcess

__all__ = ["DEMO_SOURCE", "ScoredTail", "ServiceProcess", "demo_items"]
