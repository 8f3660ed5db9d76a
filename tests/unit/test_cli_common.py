"""services.cli.common: a database URL given to `guarded_database` and the encoder `train`
assembles are checked before anything is said or opened."""

from __future__ import annotations

import importlib.metadata

import pytest

from bert_core import BertCoreError
from services.cli.common import chosen_encoder, guarded_database


def test_a_database_url_with_a_bad_port_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    def never(url: str) -> None:
        raise AssertionError("the action must not run")

    with pytest.raises(SystemExit) as exited:
        guarded_database(never, "postgresql://bob:hunter2@db:notaport/finsent")
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err == (
        "finsent: error: invalid FINSENT_DATABASE_URL postgresql://bob:****@db:notaport/finsent: "
        "port 'notaport' is not a number\n"
    )


def test_an_encoder_without_its_packages_fails_before_announcing_an_assembly(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def not_installed(name: str) -> importlib.metadata.Distribution:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", not_installed)  # no slice is installed
    with pytest.raises(BertCoreError, match=r"encoder mpnet-base needs 5 more package\(s\)"):
        chosen_encoder("mpnet-base", install_missing=True)
    assert "assembling" not in capsys.readouterr().err
