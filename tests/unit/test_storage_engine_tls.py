"""FINSENT_DATABASE_SSL* become libpq parameters of every PostgreSQL engine (services.storage.engine).

The connection itself is tested against a TLS-only Postgres in tests/integration/test_tls_pipeline.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import event
from sqlalchemy.exc import ArgumentError

from services.settings import Settings
from services.storage import make_engine
from services.storage.engine import postgres_tls_parameters


def test_settings_become_connect_args(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setenv("FINSENT_DATABASE_URL", "postgresql://db.example/finsent")
    monkeypatch.setenv("FINSENT_DATABASE_SSLMODE", "verify-full")
    monkeypatch.setenv("FINSENT_DATABASE_SSLROOTCERT", str(ca))
    tls = postgres_tls_parameters(Settings(_env_file=None))  # type: ignore[call-arg]
    assert tls == {"sslmode": "verify-full", "sslrootcert": str(ca)}
    engine = make_engine("postgresql://db.example/finsent", tls=tls)
    seen: dict[str, object] = {}

    @event.listens_for(engine, "do_connect")
    def capture(_dialect: object, _record: object, _cargs: object, cparams: dict[str, object]) -> None:
        seen.update(cparams)
        raise _Captured  # what psycopg would have been given; no connection is attempted

    with pytest.raises(Exception, match="captured"):
        engine.connect()
    assert seen["sslmode"] == "verify-full" and seen["sslrootcert"] == str(ca)
    assert seen["connect_timeout"] == 10
    engine.dispose()


class _Captured(Exception):
    def __str__(self) -> str:
        return "captured"


def test_a_parameter_in_the_url_and_the_settings_is_refused() -> None:
    with pytest.raises(
        ArgumentError, match="sslmode is given both in the URL and as FINSENT_DATABASE_SSLMODE"
    ):
        make_engine("postgresql://db.example/finsent?sslmode=require", tls={"sslmode": "verify-full"})


def test_sqlite_ignores_tls() -> None:
    engine = make_engine("sqlite://", tls={"sslmode": "verify-full"})
    assert engine.dialect.name == "sqlite"
    engine.dispose()
