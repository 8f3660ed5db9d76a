"""The one place finsent creates Kafka clients, each with the configured security applied.

Every kafka-python client (`kafka_producer`, `kafka_consumer`, `kafka_admin`) and every faust
app (`faust_app`, and through it faust's aiokafka consumers and producers) is built here, with
`services.broker.security`'s options for its library. tests/unit/test_broker_clients_contract.py
fails when a client is constructed anywhere else, so a new client cannot skip TLS or SASL.

`security=None` means the process's settings (FINSENT_KAFKA_SECURITY_PROTOCOL & co.); an
explicit `KafkaSecurity` is for the embedded broker, which speaks PLAINTEXT whatever is
configured, and for tests.

A client that cannot connect over TLS raises `KafkaSecurityError` with the handshake's own
reason (a certificate signed by another CA, a host name the certificate does not list)
instead of kafka-python's bare "NoBrokersAvailable".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError

from services.broker.errors import BrokerError
from services.broker.security import (
    KafkaSecurity,
    KafkaSecurityError,
    explain_failure,
    faust_options,
    kafka_python_options,
)

if TYPE_CHECKING:
    import faust

AppT = TypeVar("AppT", bound="faust.App")


def configured_security(security: KafkaSecurity | None = None) -> KafkaSecurity:
    """`security`, or the one the settings describe."""
    if security is not None:
        return security
    from services.settings import get_settings

    return KafkaSecurity.from_settings(get_settings())


def _options(bootstrap: str | list[str], security: KafkaSecurity, options: dict[str, Any]) -> dict[str, Any]:
    clash = sorted(
        set(options) & {"security_protocol", "ssl_context", "sasl_mechanism", "sasl_plain_password"}
    )
    if clash:
        raise TypeError(f"security options are set by services.broker.security, not by callers: {clash}")
    _check_bootstrap(bootstrap)
    return {"bootstrap_servers": bootstrap, **options, **kafka_python_options(security)}


def _check_bootstrap(bootstrap: str | list[str]) -> None:
    """A `BrokerError` naming what is wrong with the servers (FINSENT_KAFKA_BOOTSTRAP is
    checked with the settings; this covers servers given any other way), instead of
    kafka-python's ValueError from int() of a port."""
    from services.settings import bootstrap_problem

    problem = bootstrap_problem(_first(bootstrap))
    if problem:
        raise BrokerError(f"Kafka bootstrap servers {_first(bootstrap)!r}: {problem}")


def _first(bootstrap: str | list[str]) -> str:
    return bootstrap if isinstance(bootstrap, str) else ",".join(bootstrap)


def _raise_if_tls(exc: KafkaError, bootstrap: str | list[str], security: KafkaSecurity) -> None:
    """A `KafkaSecurityError` instead of `exc` when a TLS handshake is what failed."""
    reason = explain_failure(_first(bootstrap), security)
    if reason is not None:
        raise KafkaSecurityError(reason) from exc


def kafka_producer(
    bootstrap: str | list[str], *, security: KafkaSecurity | None = None, **options: Any
) -> KafkaProducer:
    """A kafka-python producer; `options` are KafkaProducer's, minus the security ones."""
    resolved = configured_security(security)
    try:
        return KafkaProducer(**_options(bootstrap, resolved, options))
    except KafkaError as exc:
        _raise_if_tls(exc, bootstrap, resolved)
        raise


def kafka_consumer(
    *topics: str, bootstrap: str | list[str], security: KafkaSecurity | None = None, **options: Any
) -> KafkaConsumer:
    """A kafka-python consumer; `options` are KafkaConsumer's, minus the security ones."""
    resolved = configured_security(security)
    try:
        return KafkaConsumer(*topics, **_options(bootstrap, resolved, options))
    except KafkaError as exc:
        _raise_if_tls(exc, bootstrap, resolved)
        raise


def kafka_admin(
    bootstrap: str | list[str], *, security: KafkaSecurity | None = None, **options: Any
) -> KafkaAdminClient:
    """A kafka-python admin client; `options` are KafkaAdminClient's, minus the security ones."""
    resolved = configured_security(security)
    try:
        return KafkaAdminClient(**_options(bootstrap, resolved, options))
    except KafkaError as exc:
        _raise_if_tls(exc, bootstrap, resolved)
        raise


def faust_app(
    app_class: type[AppT], app_id: str, *, security: KafkaSecurity | None = None, **options: Any
) -> AppT:
    """A faust app (of `app_class`: faust.App or a subclass) with the broker credentials set;
    faust passes them on to the aiokafka clients it creates."""
    if "broker_credentials" in options:
        raise TypeError("broker_credentials are set by services.broker.security, not by callers")
    return app_class(app_id, **options, **faust_options(configured_security(security)))
