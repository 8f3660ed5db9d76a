"""The alerter's configuration, built from `Settings` in one place.

The detector and lifecycle keep their own defaults (`DetectorConfig`, `LifecycleConfig`)
so they stay usable without settings; the alerter always builds them here, so a
FINSENT_ALERT_* variable reaches every part that depends on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from services.alerting import DetectorConfig, EventClock, LifecycleConfig
from services.settings import Settings


@dataclass(frozen=True, slots=True)
class AlerterConfig:
    detector: DetectorConfig
    lifecycle: LifecycleConfig
    lateness: timedelta
    live_horizon: timedelta
    partition_idle: timedelta
    checkpoint_retention: timedelta
    count: str = "stories"  # "stories": a story's copies count once; "items": every item

    @property
    def rule(self) -> str:
        return self.detector.rule

    @property
    def bucket_width(self) -> timedelta:
        return self.detector.bucket_width

    def event_clock(self) -> EventClock:
        return EventClock(
            lateness=self.lateness,
            live_horizon=self.live_horizon,
            width=self.bucket_width,
            idle_after=self.partition_idle,
        )


def alerter_config(settings: Settings) -> AlerterConfig:
    """Raises ValueError when the settings are inconsistent (e.g. p_high above p_warning)."""
    renotify = settings.alerts.alert_renotify_minutes
    # Windows anomalous enough to warn are always kept out of the baseline, so a looser
    # p_warning than the default p_learn moves p_learn with it instead of being refused.
    p_learn = max(DetectorConfig().p_learn, settings.alerts.alert_p_warning)
    return AlerterConfig(
        detector=DetectorConfig(
            bucket_width=timedelta(seconds=settings.alerts.alert_bucket_seconds),
            window_buckets=settings.alerts.alert_window_buckets,
            baseline_half_life=timedelta(hours=settings.alerts.alert_baseline_half_life_hours),
            warmup=timedelta(minutes=settings.alerts.alert_warmup_minutes),
            min_bearish=settings.alerts.alert_min_bearish,
            surge_min_bearish=settings.alerts.alert_surge_min_bearish,
            surge_short_buckets=min(
                settings.alerts.alert_surge_short_buckets, settings.alerts.alert_window_buckets
            ),
            p_warning=settings.alerts.alert_p_warning,
            p_high=settings.alerts.alert_p_high,
            p_critical=settings.alerts.alert_p_critical,
            p_learn=p_learn,
        ),
        lifecycle=LifecycleConfig(
            resolve_after=timedelta(minutes=settings.alerts.alert_resolve_after_minutes),
            cooldown=timedelta(minutes=settings.alerts.alert_cooldown_minutes),
            renotify_every=None if renotify is None else timedelta(minutes=renotify),
        ),
        lateness=timedelta(seconds=settings.alerts.alert_allowed_lateness_seconds),
        live_horizon=timedelta(minutes=settings.alerts.alert_live_horizon_minutes),
        partition_idle=timedelta(seconds=settings.alerts.alerter_partition_idle_seconds),
        checkpoint_retention=timedelta(hours=settings.alerts.alerter_checkpoint_hours),
        count=settings.alerts.alert_count,
    )
