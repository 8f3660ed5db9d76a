"""Hot reload: the worker follows the registry's champion without stopping the stream.

Three parts, so that each can be tested alone:

- `ModelSlot` holds the predictor being served. The scorer reads `slot.current` once at the
  start of each batch and uses that object for the whole batch, so a switch lands *between*
  batches: every item of a batch carries one `model_version`, and the consumer (offsets,
  acks) is never touched, so nothing is lost or scored twice by a switch.
- `load_verified` loads a registry entry only if its files match both the directory's
  manifest and the sha256 the registry recorded at registration; a damaged or swapped
  directory is refused (`ModelRefused`) and the old model keeps serving. The files are
  hashed once per load: a directory `localize` already verified (a `VerifiedModelDir`) is
  taken as verified if no file changed since, and handed to `load` as it is.
- `ModelWatcher` is a daemon thread that reconciles the slot with the registry's champion:
  woken by `model.events` (read without a consumer group, so every worker sees every event)
  and, because an event can be missed while a worker is down or the broker is away, also on
  a timer. The registry, not the event, is the truth: an event only says "look now".
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from services.scorer.batch import PredictorLike

if TYPE_CHECKING:  # bert_core's package imports torch lazily; this module must not at all
    from bert_core import VerifiedModelDir

log = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"  # bert_core.artifacts.WEIGHTS_FILE, without importing torch here


@dataclass(frozen=True, slots=True)
class ModelRef:
    """A registry entry the worker may serve."""

    version: str
    path: Path
    sha256: str | None  # of the weights file, as recorded by the registry
    manifest_sha256: str | None = None  # of manifest.json, as recorded (None: registered before it was)
    verified: VerifiedModelDir | None = None  # what `localize` hashed at `path`, if it did

    def localized(self, local: Path | VerifiedModelDir) -> ModelRef:
        """This entry served from `local`: a directory, or one already verified there."""
        if isinstance(local, Path):
            return replace(self, path=local, verified=None)
        return replace(self, path=local.path, verified=local)


class ModelRefused(Exception):
    """A model that must not be served (damaged, tampered, not the registered one)."""


class ModelSlot:
    """The predictor being served; swapped whole, read once per batch."""

    def __init__(self, predictor: PredictorLike, version: str) -> None:
        self._lock = threading.Lock()
        self._predictor = predictor
        self._version = version

    @property
    def current(self) -> PredictorLike:
        with self._lock:
            return self._predictor

    @property
    def version(self) -> str:
        with self._lock:
            return self._version

    def swap(self, predictor: PredictorLike, version: str) -> str:
        """Serve `predictor` from the next batch on; returns the version it replaced."""
        with self._lock:
            previous, self._predictor, self._version = self._version, predictor, version
        return previous


def load_verified(ref: ModelRef, load: Callable[[Path | VerifiedModelDir], PredictorLike]) -> PredictorLike:
    """`load` the directory `ref.path` after checking it is the one the registry recorded;
    `load` gets the `VerifiedModelDir`, so that it does not hash the files again."""
    from bert_core import BertCoreError, CompileError, check_model_dir

    started = time.perf_counter()
    try:
        if _reusable(ref) and ref.verified is not None:
            verified = ref.verified
            manifest = verified.recheck()  # a stat per file; hashed again only if one changed
        else:
            verified = check_model_dir(ref.path, manifest_sha256=ref.manifest_sha256)
            manifest = verified.manifest
    except BertCoreError as exc:
        raise ModelRefused(str(exc)) from None
    log.info(
        "model %s: files verified against its manifest in %.2f s", ref.version, time.perf_counter() - started
    )
    if manifest.version != ref.version:
        raise ModelRefused(
            f"{ref.path} holds model {manifest.version}, but the registry says {ref.version} lives there"
        )
    weights_sha = manifest.files.get(WEIGHTS_FILE)
    if ref.sha256 is not None and weights_sha != ref.sha256:
        raise ModelRefused(
            f"{ref.path}: weights sha256 {str(weights_sha)[:12]}… differ from the registered "
            f"{ref.sha256[:12]}…; the directory was replaced after registration"
        )
    try:
        return load(verified)
    except CompileError:
        raise  # this machine's fault, not the model's: the caller retries, or stops in one line
    except BertCoreError as exc:
        raise ModelRefused(str(exc)) from None


def _reusable(ref: ModelRef) -> bool:
    """Whether `ref.verified` checked this very directory against this very manifest hash."""
    verified = ref.verified
    return (
        verified is not None
        and verified.path == ref.path
        and (ref.manifest_sha256 is None or verified.manifest_sha256 == ref.manifest_sha256)
    )


class EventSource(Protocol):
    """Something that blocks up to `timeout` seconds and says whether a model event came."""

    def wait(self, timeout: float) -> bool: ...

    def close(self) -> None: ...


class SleepOnly:
    """The event source of a worker without `model.events`: the timer alone."""

    def __init__(self, stop: threading.Event) -> None:
        self._stop = stop

    def wait(self, timeout: float) -> bool:
        self._stop.wait(timeout)
        return False

    def close(self) -> None:
        pass


class KafkaModelEvents:
    """`model.events` read from its end, without a consumer group (every worker sees all)."""

    def __init__(self, bootstrap: str, topic: str, *, timeout_seconds: float = 10.0) -> None:
        from kafka import TopicPartition

        from services.broker.clients import kafka_consumer

        self.topic = topic
        self._consumer = kafka_consumer(
            bootstrap=bootstrap.split(","),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="latest",
            request_timeout_ms=int(max(timeout_seconds, 5) * 1000) + 1000,
        )
        partitions = self._consumer.partitions_for_topic(topic)
        if not partitions:
            self._consumer.close()
            raise ModelRefused(f"topic {topic} does not exist")
        self._consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        self._consumer.seek_to_end()

    def wait(self, timeout: float) -> bool:
        batches = self._consumer.poll(timeout_ms=int(timeout * 1000))
        for records in batches.values():
            for record in records:
                log.info(
                    "model event received",
                    extra={"topic": self.topic, "offset": record.offset, "event": _event_text(record.value)},
                )
        return bool(batches)

    def close(self) -> None:
        self._consumer.close()


def _event_text(value: bytes | None) -> str:
    return (value or b"").decode("utf-8", errors="replace")[:500]


OnSwitch = Callable[[str, str], None]  # (old version, new version)
OnRefuse = Callable[[ModelRef, str], None]


class ModelWatcher(threading.Thread):
    """Keeps `slot` serving the registry's champion (see the module docstring).

    `fetch_champion` reads the registry (None: no champion, keep what is served);
    `localize` (optional) turns a registry entry into a local directory, e.g. fetched from
    the registry's database copy when the registered path is not on this host, and raises
    `ModelRefused` when that copy is refused; `load` builds and warms a predictor (it runs
    here, in this thread, not in the batch path). A model that fails verification
    (`ModelRefused`) is not tried again until the next model event (a re-announcement after
    the directory was repaired); any other load failure is retried at the next poll.
    """

    def __init__(
        self,
        slot: ModelSlot,
        *,
        fetch_champion: Callable[[], ModelRef | None],
        load: Callable[[Path | VerifiedModelDir], PredictorLike],
        poll_seconds: float,
        localize: Callable[[ModelRef], Path | VerifiedModelDir] | None = None,
        events: Callable[[threading.Event], EventSource] | None = None,
        on_switch: OnSwitch | None = None,
        on_refuse: OnRefuse | None = None,
    ) -> None:
        super().__init__(name="model-watcher", daemon=True)
        self.slot = slot
        self._fetch = fetch_champion
        self._load = load
        self._localize = localize
        self._poll = poll_seconds
        self._make_events = events
        self._on_switch = on_switch
        self._on_refuse = on_refuse
        self._stop_event = threading.Event()
        self._refused: set[tuple[str, str | None]] = set()

    def stop(self) -> None:
        self._stop_event.set()

    def run(self) -> None:
        source = self._open_events()
        try:
            next_check = 0.0  # reconcile at once: a promotion may have happened while we started
            while not self._stop_event.is_set():
                try:
                    woken = source.wait(max(0.0, min(1.0, next_check - time.monotonic())))
                except Exception as exc:  # the broker client broke: keep following by polling
                    log.warning(
                        "reading model events failed (%s); following the registry every %.0f s instead",
                        " ".join(str(exc).split())[:300],
                        self._poll,
                    )
                    source.close()
                    source = SleepOnly(self._stop_event)
                    continue
                if self._stop_event.is_set():
                    break
                if woken:
                    self._refused.clear()  # a (re-)announcement: the directory may have been repaired
                if woken or time.monotonic() >= next_check:
                    self.reconcile()
                    next_check = time.monotonic() + self._poll
        finally:
            source.close()

    def reconcile(self) -> str | None:
        """Switch to the champion if it is not the model served; return the version now served
        if it changed, else None. Never raises: a failure is logged and the old model stays."""
        try:
            ref = self._fetch()
        except Exception as exc:
            log.warning("cannot read the model registry (will retry): %s", " ".join(str(exc).split())[:300])
            return None
        if ref is None or ref.version == self.slot.version or (ref.version, ref.sha256) in self._refused:
            return None
        log.info("loading model %s from %s", ref.version, ref.path)
        started = time.perf_counter()
        try:
            if self._localize is not None:
                ref = ref.localized(self._localize(ref))
            predictor = load_verified(ref, self._load)
        except Exception as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            if not isinstance(exc, ModelRefused):  # e.g. out of memory, a volume not yet mounted
                log.warning(
                    "could not load model %s (will retry): %s; still serving %s",
                    ref.version,
                    reason,
                    self.slot.version,
                )
                return None
            self._refused.add((ref.version, ref.sha256))
            log.error(
                "refusing model %s; still serving %s: %s",
                ref.version,
                self.slot.version,
                reason,
                extra={"model_version": ref.version, "serving": self.slot.version},
            )
            if self._on_refuse is not None:
                self._on_refuse(ref, reason)
            return None
        previous = self.slot.swap(predictor, ref.version)
        log.info(
            "switched model %s -> %s (loaded in %.1f s); batches from now on use it",
            previous,
            ref.version,
            time.perf_counter() - started,
            extra={"model_version": ref.version, "previous_model_version": previous},
        )
        if self._on_switch is not None:
            self._on_switch(previous, ref.version)
        return ref.version

    def _open_events(self) -> EventSource:
        if self._make_events is None:
            return SleepOnly(self._stop_event)
        try:
            return self._make_events(self._stop_event)
        except Exception as exc:
            log.warning(
                "cannot read model events (%s); following the registry every %.0f s instead",
                " ".join(str(exc).split())[:300],
                self._poll,
            )
            return SleepOnly(self._stop_event)
