"""`finsent topics list | scale`: the pipeline's topics and their partition counts.

The partition count of news.raw caps how many scorer workers share the stream (a consumer
group gives each partition to one member), so scaling workers out past it needs more
partitions first. Kafka can add partitions to a topic but never remove them, and adding
re-maps keys to partitions, so `scale` only grows, says so when asked to shrink, and
changes nothing when a topic is already at the asked count (docs/operations.md, "Partitions
and workers").
"""

from __future__ import annotations

from typing import Annotated

import typer

from services.cli.common import (
    BootstrapServerOption,
    JsonOption,
    broker_errors,
    configured_bootstrap,
    echo_json,
)
from services.cli.errors import fail
from services.settings import get_settings

topics_app = typer.Typer(
    help="The pipeline's Kafka topics: partition counts, and growing them for more workers.",
    no_args_is_help=True,
)


@topics_app.command("list")
def topics_list(bootstrap_server: BootstrapServerOption = None, as_json: JsonOption = False) -> None:
    """The pipeline's topics and their partition counts on the broker ("missing": run `finsent init`).

    --json: an array of {name, partitions (null if missing), scalable}.
    """
    from services.broker.topics import describe_topics, pipeline_topics, scalable_topics

    bootstrap = configured_bootstrap()
    settings = get_settings()
    names = [spec.name for spec in pipeline_topics(settings)]
    scalable = set(scalable_topics(settings))
    with broker_errors():
        counts = describe_topics(bootstrap, names, timeout=settings.kafka.kafka_timeout_seconds)
    if as_json:
        echo_json([{"name": n, "partitions": counts[n], "scalable": n in scalable} for n in names])
        return
    for name in names:
        count = counts[name]
        shown = f"{count} partition(s)" if count is not None else "missing (run `finsent init`)"
        typer.echo(f"{name}: {shown}{'  [scale]' if name in scalable else ''}")


@topics_app.command("scale")
def topics_scale(
    partitions: Annotated[
        int,
        typer.Option(
            "--partitions",
            metavar="N",
            min=1,
            help="Partition count to grow news.raw and news.scored to (never fewer than they have)",
        ),
    ],
    bootstrap_server: BootstrapServerOption = None,
    as_json: JsonOption = False,
) -> None:
    """Grow news.raw and news.scored to N partitions, for up to N scorer workers; idempotent.

    Kafka cannot remove partitions: asking for fewer than a topic has changes nothing (exit 2).
    Keys are re-mapped to partitions from then on, so per-key order holds only from the change.
    Then raise FINSENT_TOPIC_PARTITIONS (and KEDA's maxReplicaCount) to N.
    --json: an array of {name, before, after, action ("grow" or "unchanged")}.
    """
    from services.broker.topics import (
        describe_topics,
        grow_partitions,
        plan_partitions,
        refusal,
        scalable_topics,
    )

    bootstrap = configured_bootstrap()
    settings = get_settings()
    timeout = settings.kafka.kafka_timeout_seconds
    with broker_errors():
        changes = plan_partitions(
            describe_topics(bootstrap, scalable_topics(settings), timeout=timeout), partitions
        )
        problem = refusal(changes, bootstrap)
        if problem is not None:
            fail(problem)
        after = grow_partitions(bootstrap, changes, timeout=timeout)
    if as_json:
        echo_json(
            [
                {"name": c.name, "before": c.before, "after": after[c.name], "action": c.action}
                for c in changes
            ]
        )
        return
    for change in changes:
        if change.action == "grow":
            typer.echo(f"grown     {change.name}: {change.before} -> {after[change.name]} partition(s)")
        else:
            typer.echo(f"unchanged {change.name}: {after[change.name]} partition(s)")
    if settings.kafka.topic_partitions != partitions:
        typer.echo(
            f"note: set FINSENT_TOPIC_PARTITIONS={partitions} (and KEDA's maxReplicaCount) to match", err=True
        )
