"""How finsent's Kafka clients authenticate and encrypt: one policy, three client libraries.

finsent creates clients with three libraries — kafka-python (producers, admin, the alerter's
and the reload watcher's consumers), faust (the scorer worker) and, through faust, aiokafka.
Each spells TLS and SASL differently; this module is the one place that turns the
FINSENT_KAFKA_SECURITY_PROTOCOL / _SASL_* / _SSL_* settings into each library's options, so
they cannot drift apart. `services.broker.clients` applies them to every client it builds.

TLS is one `ssl.SSLContext` for all three libraries (kafka-python and aiokafka take it as
`ssl_context`, faust in its credentials) rather than kafka-python's own `ssl_cafile` family:
with one context the certificate checks — chain to the configured CA or the system trust
store, host name check on unless turned off, TLS 1.2 at least — are the same whichever
library opens the connection.

SASL PLAIN and SCRAM-SHA-256/512 are passed as the libraries' `sasl_*` options. The embedded
test broker has no SASL, so those option sets are unit-tested (tests/unit/test_broker_security.py)
rather than run against a broker; TLS is tested end to end. For operators:
docs/operations.md#secured-connections.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from services.broker.errors import BrokerError

if TYPE_CHECKING:
    from services.settings import Settings

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class KafkaSecurityError(BrokerError):
    """The security settings cannot be applied (an unreadable key, a bad certificate file), or a
    TLS handshake with a broker failed; the message is one line naming what to fix."""


@dataclass(frozen=True, slots=True)
class KafkaSecurity:
    """The resolved security settings: secrets read, paths absolute. Plain PLAINTEXT by default."""

    protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    cafile: Path | None = None
    certfile: Path | None = None
    keyfile: Path | None = None
    key_password: str | None = field(default=None, repr=False)
    check_hostname: bool = True

    @property
    def uses_tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    @classmethod
    def from_settings(cls, settings: Settings) -> KafkaSecurity:
        """The settings as validated by `Settings` (combinations are checked there), secrets read
        from their files now, so a rotated secret is picked up by the next client created."""
        s = settings
        return cls(
            protocol=s.kafka.kafka_security_protocol,
            sasl_mechanism=s.kafka.kafka_sasl_mechanism,
            username=s.kafka.kafka_sasl_username,
            password=_secret(
                s.kafka.kafka_sasl_password,
                s.kafka.kafka_sasl_password_file,
                "FINSENT_KAFKA_SASL_PASSWORD_FILE",
            ),
            cafile=_absolute(s.kafka.kafka_ssl_cafile),
            certfile=_absolute(s.kafka.kafka_ssl_certfile),
            keyfile=_absolute(s.kafka.kafka_ssl_keyfile),
            key_password=_secret(
                s.kafka.kafka_ssl_key_password,
                s.kafka.kafka_ssl_key_password_file,
                "FINSENT_KAFKA_SSL_KEY_PASSWORD_FILE",
            ),
            check_hostname=s.kafka.kafka_ssl_check_hostname,
        )


PLAINTEXT = KafkaSecurity()


def _absolute(path: Path | None) -> Path | None:
    return path.expanduser().absolute() if path is not None else None


def _secret(value: Any, path: Path | None, variable: str) -> str | None:
    if value is not None:
        return str(value.get_secret_value())
    if path is None:
        return None
    try:
        text = path.expanduser().read_text(encoding="utf-8").strip("\r\n")
    except OSError as exc:
        raise KafkaSecurityError(f"{variable}: cannot read {path}: {exc.strerror or exc}") from None
    if not text:
        raise KafkaSecurityError(f"{variable}: {path} is empty")
    return text


def ssl_context(security: KafkaSecurity) -> ssl.SSLContext | None:
    """The TLS context every client uses; None without TLS."""
    if not security.uses_tls:
        return None
    try:
        # cafile None: the system trust store (public CAs: Confluent Cloud, MSK).
        context = ssl.create_default_context(cafile=str(security.cafile) if security.cafile else None)
    except (OSError, ssl.SSLError) as exc:
        raise KafkaSecurityError(
            f"FINSENT_KAFKA_SSL_CAFILE {security.cafile}: not a PEM CA certificate file ({_reason(exc)})"
        ) from None
    context.check_hostname = security.check_hostname
    if security.certfile is not None:
        try:
            context.load_cert_chain(
                str(security.certfile),
                str(security.keyfile) if security.keyfile else None,
                password=security.key_password,
            )
        except (OSError, ssl.SSLError) as exc:
            raise KafkaSecurityError(
                "FINSENT_KAFKA_SSL_CERTFILE/_KEYFILE: cannot load the client certificate "
                f"{security.certfile} with its key ({_reason(exc)}; a wrong FINSENT_KAFKA_SSL_KEY_PASSWORD?)"
            ) from None
    return context


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return " ".join(str(exc).split()) or type(exc).__name__


def _sasl_options(security: KafkaSecurity) -> dict[str, Any]:
    if not security.uses_sasl:
        return {}
    # Both libraries take SCRAM's user and password in the sasl_plain_* options too.
    return {
        "sasl_mechanism": security.sasl_mechanism,
        "sasl_plain_username": security.username,
        "sasl_plain_password": security.password,
    }


def kafka_python_options(security: KafkaSecurity) -> dict[str, Any]:
    """Options for kafka-python's KafkaProducer, KafkaConsumer and KafkaAdminClient."""
    options: dict[str, Any] = {"security_protocol": security.protocol}
    if security.uses_tls:
        options["ssl_context"] = ssl_context(security)  # its ssl_check_hostname etc. then go unused
    options.update(_sasl_options(security))
    return options


def aiokafka_options(security: KafkaSecurity) -> dict[str, Any]:
    """Options for aiokafka's AIOKafkaProducer and AIOKafkaConsumer (what faust passes them too)."""
    options: dict[str, Any] = {"security_protocol": security.protocol}
    if security.uses_tls:
        options["ssl_context"] = ssl_context(security)
    options.update(_sasl_options(security))
    return options


def faust_options(security: KafkaSecurity) -> dict[str, Any]:
    """Options for a faust App: `broker_credentials`, which faust's aiokafka transport turns into
    the `aiokafka_options` above (tests/unit/test_broker_security.py checks that it does)."""
    from faust.auth import SASLCredentials, SSLCredentials
    from faust.types.auth import SASLMechanism

    context = ssl_context(security)
    credentials: Any = None
    if security.uses_sasl:
        credentials = SASLCredentials(
            username=security.username,
            password=security.password,
            mechanism=SASLMechanism(security.sasl_mechanism),
            ssl_context=context,
        )
    elif context is not None:
        credentials = SSLCredentials(context)
    return {"broker_credentials": credentials}


_NAME_MISMATCH = {62, 64}  # OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH


def explain_failure(bootstrap: str, security: KafkaSecurity, timeout: float = 5.0) -> str | None:
    """Why TLS to the first bootstrap server fails, in one line; None when the handshake works
    (or TLS is off, or the server cannot be reached at all).

    kafka-python reports a failed handshake only as "NoBrokersAvailable" (the certificate error
    goes to its log), so a client that cannot connect is asked again here, with the same
    context, for the reason an operator can act on.
    """
    context = ssl_context(security)
    if context is None:
        return None
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    host = host.strip("[]")
    try:
        with (
            socket.create_connection((host, int(port)), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=host),
        ):
            return None
    except ssl.SSLCertVerificationError as exc:
        hint = (
            "the certificate does not name this host; fix FINSENT_KAFKA_BOOTSTRAP or the certificate"
            if exc.verify_code in _NAME_MISMATCH
            else "check FINSENT_KAFKA_SSL_CAFILE"
        )
        return (
            f"TLS to Kafka at {host}:{port} failed: certificate verify failed: {exc.verify_message} ({hint})"
        )
    except ssl.SSLError as exc:
        return (
            f"TLS to Kafka at {host}:{port} failed: {_reason(exc)} "
            "(is it a TLS listener? check FINSENT_KAFKA_SECURITY_PROTOCOL)"
        )
    except (OSError, ValueError):
        return None
