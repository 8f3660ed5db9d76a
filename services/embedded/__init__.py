"""The embedded default of `finsent run`: the supervised worker, the demo feed, the live tail."""

from services.embedded.demo_feed import DEMO_SOURCE, demo_items
from services.embedded.scored_tail import ScoredTail
from services.embedded.worker_process import WorkerProcess

__all__ = ["DEMO_SOURCE", "ScoredTail", "WorkerProcess", "demo_items"]
