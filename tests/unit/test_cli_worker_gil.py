"""The worker's GIL switch interval comes from FINSENT_SCORER_GIL_SWITCH_MS."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest
from pydantic import ValidationError

from services.scorer import apply_gil_switch_interval
from services.settings import Settings


@pytest.fixture
def restore_switch_interval() -> Iterator[None]:
    before = sys.getswitchinterval()
    yield
    sys.setswitchinterval(before)


def test_worker_applies_the_configured_switch_interval(
    monkeypatch: pytest.MonkeyPatch, restore_switch_interval: None
) -> None:
    monkeypatch.setenv("FINSENT_SCORER_GIL_SWITCH_MS", "0.25")
    apply_gil_switch_interval(Settings())
    assert sys.getswitchinterval() == pytest.approx(0.00025)


def test_default_switch_interval_is_shorter_than_pythons(
    monkeypatch: pytest.MonkeyPatch, restore_switch_interval: None
) -> None:
    monkeypatch.delenv("FINSENT_SCORER_GIL_SWITCH_MS", raising=False)  # the default, not the caller's
    apply_gil_switch_interval(Settings())
    assert sys.getswitchinterval() == pytest.approx(0.0005)


@pytest.mark.parametrize("value", ["0", "-1", "101", "fast"])
def test_a_bad_switch_interval_is_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("FINSENT_SCORER_GIL_SWITCH_MS", value)
    with pytest.raises(ValidationError, match="scorer_gil_switch_ms"):
        Settings()
