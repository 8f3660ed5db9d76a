"""`finsent init | ingest | serve-http | poll-feed`: topics, and news into `news.raw`.

All of them talk to the broker at FINSENT_KAFKA_BOOTSTRAP. Each checks, before sending
anything, that the broker answers and that `news.raw` exists, so a typo in the address or a
forgotten `finsent init` is one line of error instead of a minute-long timeout (or a topic
silently auto-created with the wrong partition count).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from services.cli.common import BootstrapServerOption, PartitionsOption, broker_errors, configured_bootstrap
from services.cli.errors import fail, require_files
from services.settings import FlatSettings, get_settings

if TYPE_CHECKING:
    from services.ingest.feed_source import PollResult
    from services.ingest.producer import NewsProducer

MAX_SKIP_LINES = 20  # invalid rows reported one by one; beyond this only counted


def _default(name: str) -> Any:
    """A setting's default for help texts, so it is written down in one place only."""
    return FlatSettings.model_fields[name].default


def _raw_topic_ready() -> tuple[str, str]:
    """(bootstrap, topic) after checking that the broker answers and news.raw exists."""
    from services.broker.topics import require_topic

    bootstrap = configured_bootstrap()
    settings = get_settings()
    with broker_errors():
        require_topic(bootstrap, settings.kafka.topic_news_raw, timeout=settings.kafka.kafka_timeout_seconds)
    return bootstrap, settings.kafka.topic_news_raw


def _producer(bootstrap: str, topic: str) -> NewsProducer:
    from services.ingest.producer import NewsProducer

    with broker_errors():
        settings = get_settings()
        return NewsProducer(
            bootstrap,
            topic=topic,
            max_block_s=settings.kafka.kafka_timeout_seconds,
            linger_ms=settings.ingest.ingest_linger_ms,
        )


def init(
    partitions: PartitionsOption = None,
    bootstrap_server: BootstrapServerOption = None,
) -> None:
    """Create the pipeline's topics (news.raw, news.scored, news.dlq, model.events, alerts); idempotent.

    An existing topic keeps its partition count: `finsent topics scale --partitions N` grows it."""
    from services.broker.topics import ensure_topics, pipeline_topics

    bootstrap = configured_bootstrap()
    settings = get_settings()
    specs = pipeline_topics(settings)
    with broker_errors():
        states = ensure_topics(bootstrap, specs, timeout=settings.kafka.kafka_timeout_seconds)
    for spec, state in zip(specs, states, strict=True):
        note = ""
        if not state.created and state.partitions != spec.partitions:
            note = (
                f" (configured {spec.partitions}; an existing topic keeps its partitions: "
                "`finsent topics scale --partitions N` grows news.raw and news.scored)"
            )
        verb = "created" if state.created else "exists "
        typer.echo(f"{verb} {state.name}: {state.partitions} partition(s){note}")
    typer.echo(f"topics ready on {bootstrap}")


class _SkipReporter:
    """Reports the first invalid rows on stderr (without breaking a progress bar), counts the rest."""

    def __init__(self, label: str, write: Callable[[str], None]) -> None:
        self.label = label
        self.count = 0
        self._write = write

    def __call__(self, where: object, reason: str) -> None:
        self.count += 1
        if self.count <= MAX_SKIP_LINES:
            self._write(f"{self.label}:{where}: skipped: {reason}")
        elif self.count == MAX_SKIP_LINES + 1:
            self._write(
                f"{self.label}: more invalid rows skipped (only the first {MAX_SKIP_LINES} are shown)"
            )


def ingest(
    file: Annotated[Path, typer.Argument(help="News file: .jsonl (one JSON object per line) or .csv")],
    rate: Annotated[float | None, typer.Option("--rate", help="Send N items per second")] = None,
    replay_speed: Annotated[
        float | None,
        typer.Option("--replay-speed", help="Follow the gaps between published_at, X times faster"),
    ] = None,
    bootstrap_server: BootstrapServerOption = None,
) -> None:
    """Send a news file to news.raw, validated row by row (invalid rows are reported and skipped)."""
    from tqdm import tqdm

    from services.ingest.file_source import NewsFileError, count_records, file_format, read_news_file
    from services.ingest.replay import replay

    if rate is not None and replay_speed is not None:
        fail("use either --rate or --replay-speed, not both")
    if rate is not None and not rate > 0:
        fail(f"--rate must be positive, got {rate:g}")
    if replay_speed is not None and not replay_speed > 0:
        fail(f"--replay-speed must be positive, got {replay_speed:g}")
    require_files([file])
    try:
        file_format(file)
    except NewsFileError as exc:
        fail(str(exc))
    bootstrap, topic = _raw_topic_ready()

    with (
        broker_errors(),
        _producer(bootstrap, topic) as producer,
        tqdm(total=count_records(file), unit="item", desc="ingest", disable=None, file=sys.stderr) as bar,
    ):
        skips = _SkipReporter(str(file), lambda message: tqdm.write(message, file=sys.stderr))

        def skipped(line: int, reason: str) -> None:
            bar.update(1)
            skips(line, reason)

        try:
            counts = replay(
                read_news_file(file),
                producer,
                rate=rate,
                replay_speed=replay_speed,
                on_skip=skipped,
                on_sent=lambda _event_id: bar.update(1),
            )
        except NewsFileError as exc:
            fail(f"{exc} (after {producer.sent} items were sent)")
    typer.echo(
        f"sent {counts.sent} items from {file} to {topic} on {bootstrap}; skipped {counts.skipped} invalid"
    )


def serve_http(
    host: Annotated[
        str | None,
        typer.Option(
            help=f"Listen address (env FINSENT_INGEST_HTTP_HOST, default {_default('ingest_http_host')})"
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=65535,
            help=f"Port (env FINSENT_INGEST_HTTP_PORT, default {_default('ingest_http_port')})",
        ),
    ] = None,
    bootstrap_server: BootstrapServerOption = None,
) -> None:
    """Accept news over HTTP: POST /news (one JSON object or a list, bearer token, application/json)
    into news.raw; GET /health. Tokens: `finsent tokens add NAME`."""
    from services.ingest.http_source import create_app, serve
    from services.ingest.token_file import TokenWatcher
    from services.ingest.tokens import TokenConfigError, parse_hash_list

    settings = get_settings()
    host = host if host is not None else settings.ingest.ingest_http_host
    port = port if port is not None else settings.ingest.ingest_http_port
    try:
        watcher = TokenWatcher(
            settings.ingest.ingest_tokens_file, parse_hash_list(settings.ingest.ingest_token_hashes)
        )
    except TokenConfigError as exc:
        fail(str(exc))
    active = sum(record.active for record in watcher.records())
    if not active:
        fail(
            f"no active ingest token in {settings.ingest.ingest_tokens_file} or FINSENT_INGEST_TOKEN_HASHES: "
            "POST /news would refuse everyone; make one with `finsent tokens add NAME`"
        )
    bootstrap, topic = _raw_topic_ready()

    def ready() -> None:
        typer.echo(
            f"listening on http://{host}:{port} (POST /news, GET /health), sending to {topic} on "
            f"{bootstrap}; {active} active token(s); Ctrl-C stops"
        )

    with broker_errors(), _producer(bootstrap, topic) as producer:
        app = create_app(
            producer,
            tokens=watcher.records,
            max_body_bytes=settings.ingest.ingest_max_request_bytes,
            max_items=settings.ingest.ingest_max_items_per_request,
            max_concurrent=settings.ingest.ingest_max_concurrent_requests,
            body_timeout=settings.ingest.ingest_body_timeout_seconds,
        )
        try:
            serve(app, host=host, port=port, on_ready=ready)
        except OSError as exc:
            fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    typer.echo(f"stopped; {producer.sent} items sent")


def poll_summary(label: str, result: PollResult) -> str:
    """The line `poll-feed` prints after each poll. Entries over the per-poll limit are named
    when there are any: without them, a poll of a long new feed read as if entries were lost."""
    line = f"polled {label}: {result.fetched} entries, {result.sent} new sent, {result.skipped} invalid"
    if result.deferred:
        line += f", {result.deferred} deferred to the next poll"
    return line


def poll_feed(
    url: Annotated[str, typer.Argument(help="http(s) URL of an RSS 2.0, Atom or JSON feed")],
    interval: Annotated[
        float | None,
        typer.Option(
            "--interval",
            help=f"Seconds between polls (env FINSENT_FEED_INTERVAL_SECONDS, default "
            f"{_default('feed_interval_seconds'):g})",
        ),
    ] = None,
    once: Annotated[bool, typer.Option("--once", help="Poll once and exit (for cron)")] = False,
    bootstrap_server: BootstrapServerOption = None,
) -> None:
    """Poll a feed and send each new entry to news.raw once; runs until Ctrl-C."""
    from services.ingest.feed_source import FeedError, FeedPoller, check_feed_url, run_poller

    settings = get_settings()
    interval = interval if interval is not None else settings.ingest.feed_interval_seconds
    if not interval > 0:
        fail(f"--interval must be positive, got {interval:g}")
    try:
        check_feed_url(url)
        settings.runtime.outbound_policy.check_url(url)
    except ValueError as exc:
        fail(str(exc))
    bootstrap, topic = _raw_topic_ready()
    poller = FeedPoller(
        url, policy=settings.runtime.outbound_policy, timeout=settings.ingest.feed_fetch_timeout_seconds
    )
    label = poller.label  # the URL without credentials or query, for messages
    skips = _SkipReporter(label, lambda message: typer.echo(message, err=True))

    def report(result: PollResult) -> None:
        typer.echo(poll_summary(label, result))

    with broker_errors(), _producer(bootstrap, topic) as producer:
        if once:
            try:
                report(poller.poll(producer, on_skip=lambda entry, reason: skips(entry.key, reason)))
            except FeedError as exc:
                fail(str(exc))
            return
        typer.echo(f"polling {label} every {interval:g} s into {topic} on {bootstrap}; Ctrl-C stops")
        try:
            run_poller(
                poller,
                producer,
                interval=interval,
                stop=threading.Event(),
                on_result=report,
                on_skip=lambda entry, reason: skips(entry.key, reason),
                on_error=lambda exc: typer.echo(
                    f"finsent: warning: {exc}; retrying in {interval:g} s", err=True
                ),
            )
        except KeyboardInterrupt:
            typer.echo(f"stopped; {producer.sent} entries sent")
