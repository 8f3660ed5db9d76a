"""Kafka security settings → each client library's options (services.broker.security).

The embedded test broker (Tansu) has no SASL, so SASL is tested here: the option sets each
library receives, and — for kafka-python — the mechanism objects it builds from them, driven
through a PLAIN and a full SCRAM exchange against a server side written from RFC 5802.
TLS is tested end to end in tests/integration/test_tls_pipeline.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import ssl
from pathlib import Path

import pytest
from pydantic import ValidationError

from services.broker.security import (
    PLAINTEXT,
    KafkaSecurity,
    KafkaSecurityError,
    aiokafka_options,
    faust_options,
    kafka_python_options,
    ssl_context,
)
from services.cli.errors import settings_error_line
from services.settings import Settings

BOOTSTRAP = {"FINSENT_KAFKA_BOOTSTRAP": "kafka.example:9093"}


def settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    for name in list(os.environ):
        if name.startswith("FINSENT_KAFKA_") or name.startswith("FINSENT_DATABASE_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings(_env_file=None)  # type: ignore[call-arg]


def invalid(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    with pytest.raises(ValidationError) as caught:
        settings(monkeypatch, **env)
    return settings_error_line(caught.value)


@pytest.fixture
def ca_pem(tmp_path: Path) -> Path:
    """A throwaway CA's certificate as a PEM file."""
    from tests.tls_certs import make_ca

    ca = make_ca("unit test CA")
    path = tmp_path / "ca.pem"
    path.write_bytes(ca.cert_pem)
    return path


# ---------------------------------------------------------------------------- settings checks


def test_plaintext_is_the_default_and_needs_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    s = settings(monkeypatch)
    assert KafkaSecurity.from_settings(s) == PLAINTEXT
    assert kafka_python_options(PLAINTEXT) == {"security_protocol": "PLAINTEXT"}
    assert faust_options(PLAINTEXT) == {"broker_credentials": None}


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"FINSENT_KAFKA_SECURITY_PROTOCOL": "SSL"},
            "FINSENT_KAFKA_SECURITY_PROTOCOL=SSL needs FINSENT_KAFKA_BOOTSTRAP",
        ),
        (
            {**BOOTSTRAP, "FINSENT_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"},
            "FINSENT_KAFKA_SASL_MECHANISM must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512",
        ),
        (
            {
                **BOOTSTRAP,
                "FINSENT_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "FINSENT_KAFKA_SASL_MECHANISM": "PLAIN",
            },
            "FINSENT_KAFKA_SASL_USERNAME must be set",
        ),
        (
            {
                **BOOTSTRAP,
                "FINSENT_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "FINSENT_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                "FINSENT_KAFKA_SASL_USERNAME": "finsent",
            },
            "set one of FINSENT_KAFKA_SASL_PASSWORD or FINSENT_KAFKA_SASL_PASSWORD_FILE",
        ),
        (
            {**BOOTSTRAP, "FINSENT_KAFKA_SECURITY_PROTOCOL": "SSL", "FINSENT_KAFKA_SASL_USERNAME": "finsent"},
            "FINSENT_KAFKA_SASL_USERNAME is set but with FINSENT_KAFKA_SECURITY_PROTOCOL=SSL no SASL login",
        ),
        (
            {**BOOTSTRAP, "FINSENT_KAFKA_SSL_CAFILE": "/etc/hosts"},
            "FINSENT_KAFKA_SSL_CAFILE is set but with FINSENT_KAFKA_SECURITY_PROTOCOL=PLAINTEXT the "
            "connection is not TLS",
        ),
        (
            {
                **BOOTSTRAP,
                "FINSENT_KAFKA_SECURITY_PROTOCOL": "SSL",
                "FINSENT_KAFKA_SSL_CAFILE": "/nonexistent.pem",
            },
            "FINSENT_KAFKA_SSL_CAFILE: cannot read /nonexistent.pem",
        ),
        (
            {
                **BOOTSTRAP,
                "FINSENT_KAFKA_SECURITY_PROTOCOL": "SSL",
                "FINSENT_KAFKA_SSL_KEYFILE": "/etc/hosts",
            },
            "FINSENT_KAFKA_SSL_KEYFILE needs FINSENT_KAFKA_SSL_CERTFILE",
        ),
        (
            {"FINSENT_KAFKA_SECURITY_PROTOCOL": "TLS"},
            "FINSENT_KAFKA_SECURITY_PROTOCOL='TLS': input should be",
        ),
        (
            {"FINSENT_DATABASE_SSLMODE": "verify-full"},
            "FINSENT_DATABASE_SSLMODE applies only to a postgresql",
        ),
        (
            {
                "FINSENT_DATABASE_URL": "postgresql://db.example/finsent",
                "FINSENT_DATABASE_SSLROOTCERT": "/nonexistent.pem",
            },
            "FINSENT_DATABASE_SSLROOTCERT: cannot read /nonexistent.pem",
        ),
    ],
)
def test_a_bad_combination_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str
) -> None:
    message = invalid(monkeypatch, **env)
    assert expected in message
    assert "\n" not in message


def test_the_password_never_appears_in_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    message = invalid(monkeypatch, **BOOTSTRAP, FINSENT_KAFKA_SASL_PASSWORD="hunter2-secret")
    assert "FINSENT_KAFKA_SASL_PASSWORD is set" in message
    assert "hunter2" not in message


def test_an_empty_password_file_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    empty = tmp_path / "password"
    empty.write_text("\n")
    message = invalid(
        monkeypatch,
        **BOOTSTRAP,
        FINSENT_KAFKA_SECURITY_PROTOCOL="SASL_SSL",
        FINSENT_KAFKA_SASL_MECHANISM="PLAIN",
        FINSENT_KAFKA_SASL_USERNAME="finsent",
        FINSENT_KAFKA_SASL_PASSWORD_FILE=str(empty),
    )
    assert message == f"FINSENT_KAFKA_SASL_PASSWORD_FILE: {empty} is empty"


# ---------------------------------------------------------------------------- SASL per mechanism


def sasl_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, protocol: str, mechanism: str
) -> KafkaSecurity:
    secret = tmp_path / "kafka-password"
    secret.write_text("s3cret pass\n")  # a mounted secret's trailing newline is not part of it
    return KafkaSecurity.from_settings(
        settings(
            monkeypatch,
            **BOOTSTRAP,
            FINSENT_KAFKA_SECURITY_PROTOCOL=protocol,
            FINSENT_KAFKA_SASL_MECHANISM=mechanism,
            FINSENT_KAFKA_SASL_USERNAME="finsent-svc",
            FINSENT_KAFKA_SASL_PASSWORD_FILE=str(secret),
        )
    )


MECHANISMS = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


@pytest.mark.parametrize("mechanism", MECHANISMS)
@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
def test_sasl_options_of_each_library(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, protocol: str, mechanism: str
) -> None:
    security = sasl_settings(monkeypatch, tmp_path, protocol, mechanism)
    assert "s3cret" not in repr(security)
    for options in (kafka_python_options(security), aiokafka_options(security)):
        assert options["security_protocol"] == protocol
        assert options["sasl_mechanism"] == mechanism
        assert options["sasl_plain_username"] == "finsent-svc"
        assert options["sasl_plain_password"] == "s3cret pass"
        context = options.get("ssl_context")
        if protocol == "SASL_SSL":
            assert isinstance(context, ssl.SSLContext)
            assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
        else:
            assert context is None


@pytest.mark.parametrize("mechanism", MECHANISMS)
@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
def test_faust_hands_aiokafka_the_same_options(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, protocol: str, mechanism: str
) -> None:
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    security = sasl_settings(monkeypatch, tmp_path, protocol, mechanism)
    through_faust = dict(credentials_to_aiokafka_auth(faust_options(security)["broker_credentials"]))
    direct = aiokafka_options(security)
    assert (through_faust.pop("ssl_context") is None) == (direct.pop("ssl_context", None) is None)
    assert through_faust == direct


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
def test_aiokafka_accepts_the_options(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, protocol: str) -> None:
    import asyncio

    from aiokafka.client import AIOKafkaClient

    for mechanism in MECHANISMS:
        options = aiokafka_options(sasl_settings(monkeypatch, tmp_path, protocol, mechanism))

        async def build(options: dict[str, object] = options) -> AIOKafkaClient:
            return AIOKafkaClient(bootstrap_servers="127.0.0.1:9", **options)  # validates, no connect

        client = asyncio.run(build())
        assert client._sasl_mechanism == mechanism


def test_kafka_python_plain_sends_the_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from kafka.net.sasl import get_sasl_mechanism

    options = kafka_python_options(sasl_settings(monkeypatch, tmp_path, "SASL_SSL", "PLAIN"))
    mechanism = get_sasl_mechanism(options["sasl_mechanism"])(**options)
    assert mechanism.auth_bytes() == b"finsent-svc\0finsent-svc\0s3cret pass"


@pytest.mark.parametrize("mechanism_name", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_kafka_python_scram_proves_the_password_to_a_server(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, mechanism_name: str
) -> None:
    from kafka.net.sasl import get_sasl_mechanism

    options = kafka_python_options(sasl_settings(monkeypatch, tmp_path, "SASL_SSL", mechanism_name))
    client = get_sasl_mechanism(mechanism_name)(**options)
    server = ScramServer(mechanism_name, user="finsent-svc", password="s3cret pass")
    client.receive(server.first(client.auth_bytes()))
    client.receive(server.final(client.auth_bytes()))  # raises if the server's signature is wrong
    assert client.is_authenticated()
    wrong = ScramServer(mechanism_name, user="finsent-svc", password="another")
    client = get_sasl_mechanism(mechanism_name)(**options)
    client.receive(wrong.first(client.auth_bytes()))
    with pytest.raises(PermissionError):
        wrong.final(client.auth_bytes())


class ScramServer:
    """The broker's half of RFC 5802 (what Kafka checks), enough to verify a client's proof."""

    def __init__(self, mechanism: str, *, user: str, password: str) -> None:
        self.hash = hashlib.sha256 if mechanism == "SCRAM-SHA-256" else hashlib.sha512
        self.user = user
        self.salt = os.urandom(16)
        self.iterations = 4096
        salted = hashlib.pbkdf2_hmac(self.hash().name, password.encode(), self.salt, self.iterations)
        self.stored_key = self.hash(self._hmac(salted, b"Client Key")).digest()
        self.server_key = self._hmac(salted, b"Server Key")

    def _hmac(self, key: bytes, message: bytes) -> bytes:
        return hmac.new(key, message, self.hash).digest()

    def first(self, client_first: bytes) -> bytes:
        assert client_first.startswith(b"n,,")
        self.client_first_bare = client_first[3:]
        fields = dict(part.split(b"=", 1) for part in self.client_first_bare.split(b","))
        if fields[b"n"].decode() != self.user:
            raise PermissionError("unknown user")
        self.nonce = fields[b"r"] + base64.b64encode(os.urandom(12))
        salt = base64.b64encode(self.salt)
        self.server_first = b"r=%s,s=%s,i=%d" % (self.nonce, salt, self.iterations)
        return self.server_first

    def final(self, client_final: bytes) -> bytes:
        without_proof, _, proof = client_final.rpartition(b",p=")
        auth_message = b",".join([self.client_first_bare, self.server_first, without_proof])
        signature = self._hmac(self.stored_key, auth_message)
        client_key = bytes(a ^ b for a, b in zip(base64.b64decode(proof), signature, strict=True))
        if self.hash(client_key).digest() != self.stored_key:
            raise PermissionError("wrong password")
        return b"v=" + base64.b64encode(self._hmac(self.server_key, auth_message))


# ---------------------------------------------------------------------------- TLS context


def test_tls_context_verifies_against_the_configured_ca(
    monkeypatch: pytest.MonkeyPatch, ca_pem: Path
) -> None:
    security = KafkaSecurity.from_settings(
        settings(
            monkeypatch,
            **BOOTSTRAP,
            FINSENT_KAFKA_SECURITY_PROTOCOL="SSL",
            FINSENT_KAFKA_SSL_CAFILE=str(ca_pem),
        )
    )
    context = ssl_context(security)
    assert context is not None
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "unit test CA"),),)]
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2


def test_hostname_check_can_be_turned_off_but_the_chain_is_still_verified(
    monkeypatch: pytest.MonkeyPatch, ca_pem: Path
) -> None:
    security = KafkaSecurity.from_settings(
        settings(
            monkeypatch,
            **BOOTSTRAP,
            FINSENT_KAFKA_SECURITY_PROTOCOL="SSL",
            FINSENT_KAFKA_SSL_CAFILE=str(ca_pem),
            FINSENT_KAFKA_SSL_CHECK_HOSTNAME="false",
        )
    )
    context = ssl_context(security)
    assert context is not None and not context.check_hostname
    assert context.verify_mode == ssl.CERT_REQUIRED


def test_client_certificate_with_an_encrypted_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from tests.tls_certs import make_ca

    ca = make_ca("client CA")
    leaf = ca.issue("finsent-client", key_password=b"key-pass")
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    cert.write_bytes(leaf.cert_pem)
    key.write_bytes(leaf.key_pem)
    base = {
        **BOOTSTRAP,
        "FINSENT_KAFKA_SECURITY_PROTOCOL": "SSL",
        "FINSENT_KAFKA_SSL_CERTFILE": str(cert),
        "FINSENT_KAFKA_SSL_KEYFILE": str(key),
    }
    good = KafkaSecurity.from_settings(
        settings(monkeypatch, **base, FINSENT_KAFKA_SSL_KEY_PASSWORD="key-pass")
    )
    assert ssl_context(good) is not None
    bad = KafkaSecurity.from_settings(settings(monkeypatch, **base, FINSENT_KAFKA_SSL_KEY_PASSWORD="wrong"))
    with pytest.raises(KafkaSecurityError, match="cannot load the client certificate") as caught:
        ssl_context(bad)
    assert "wrong" not in str(caught.value).replace("a wrong FINSENT", "")


def test_the_cli_prints_one_line_for_a_bad_combination(tmp_path: Path) -> None:
    import subprocess
    import sys

    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FINSENT_")},
        "FINSENT_HOME": str(tmp_path),
        "FINSENT_KAFKA_BOOTSTRAP": "kafka.example:9093",
        "FINSENT_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "FINSENT_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
        "FINSENT_KAFKA_SASL_PASSWORD": "hunter2-secret",
    }
    result = subprocess.run(
        [sys.executable, "-m", "services", "init"],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr == (
        "finsent: error: FINSENT_KAFKA_SASL_USERNAME must be set with "
        "FINSENT_KAFKA_SECURITY_PROTOCOL=SASL_SSL\n"
    )


def test_handshake_failures_are_explained_and_the_hostname_check_is_real(tmp_path: Path) -> None:
    """A local TLS server whose certificate names another host: refused with the host name check
    on (the default), accepted with it off, refused again by a client trusting another CA."""
    import socket
    import threading

    from services.broker.security import explain_failure
    from tests.tls_certs import make_ca

    ca = make_ca("handshake CA")
    leaf = ca.issue("elsewhere", hosts=("kafka.elsewhere.example",))
    for name, data in {"ca.pem": ca.cert_pem, "s.pem": leaf.cert_pem, "s.key": leaf.key_pem}.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "other.pem").write_bytes(make_ca("other CA").cert_pem)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(tmp_path / "s.pem", tmp_path / "s.key")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                raw, _ = listener.accept()
            except OSError:
                return
            try:
                with server_context.wrap_socket(raw, server_side=True):
                    pass
            except (ssl.SSLError, OSError):
                raw.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        bootstrap = f"127.0.0.1:{port}"
        checked = KafkaSecurity(protocol="SSL", cafile=tmp_path / "ca.pem")
        reason = explain_failure(bootstrap, checked)
        assert reason is not None and "does not name this host" in reason, reason
        assert (
            explain_failure(
                bootstrap, KafkaSecurity(protocol="SSL", cafile=tmp_path / "ca.pem", check_hostname=False)
            )
            is None
        )
        wrong_ca = explain_failure(bootstrap, KafkaSecurity(protocol="SSL", cafile=tmp_path / "other.pem"))
        assert wrong_ca is not None and "check FINSENT_KAFKA_SSL_CAFILE" in wrong_ca, wrong_ca
        assert explain_failure(bootstrap, PLAINTEXT) is None  # nothing to explain without TLS
    finally:
        stop.set()
        listener.close()
        thread.join(timeout=5)
