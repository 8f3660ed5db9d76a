"""The background upgrade on the scheduler's /metrics: read from the state file at each scrape.

The trainer (`finsent upgrade-model`) is a short-lived child with no port of its own; the
scheduler, which `finsent run` starts on the same FINSENT_HOME, already serves metrics, so it
exports what the trainer last recorded. No state file (no upgrade on this home): no samples.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from services.learning.upgrade_plan import ACTIVE, FINISHED
from services.learning.upgrade_state import read_state

STATUSES = (*ACTIVE, *FINISHED, "failed", "stopped")


class UpgradeCollector(Collector):
    def __init__(self, upgrade_dir: Path) -> None:
        self._dir = upgrade_dir

    def collect(self) -> Iterator[GaugeMetricFamily]:
        state = read_state(self._dir)
        if state is None:
            return
        status = GaugeMetricFamily(
            "finsent_upgrade_status",
            "The background upgrade of the bootstrap model: 1 for its current status",
            labels=["status"],
        )
        for name in STATUSES:
            status.add_metric([name], 1.0 if state.status == name else 0.0)
        yield status
        yield GaugeMetricFamily(
            "finsent_upgrade_epochs_done", "Epochs the background training has done", value=state.epoch
        )
        yield GaugeMetricFamily(
            "finsent_upgrade_elapsed_seconds",
            "Seconds the background training has run",
            value=state.elapsed_s,
        )
        if state.eta_s is not None and state.status == "training":
            yield GaugeMetricFamily(
                "finsent_upgrade_eta_seconds",
                "Estimated seconds until the full model is trained",
                value=state.eta_s,
            )
