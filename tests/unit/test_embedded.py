from __future__ import annotations

import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from services.cli.app import app
from services.cli.run_command import StreamPrinter
from services.embedded import DEMO_SOURCE, ServiceProcess, demo_items
from services.model_source import resolve_model_dir
from services.settings import Settings


def test_demo_items_are_distinct_seeded_and_capped() -> None:
    texts = ["Acme beats", "acme  beats", "Acme beats", "", "Beta misses", "Gamma holds"]
    first = demo_items(texts, count=10, seed=1)
    assert sorted(item["headline"] for item in first) == [
        "Acme beats",
        "Beta misses",
        "Gamma holds",
        "acme beats",
    ]
    assert all(item["source"] == DEMO_SOURCE and "id" not in item for item in first)
    assert demo_items(texts, count=10, seed=1) == first
    assert len(demo_items(texts, count=2, seed=1)) == 2


@pytest.mark.parametrize(("texts", "count"), [(["a"], 0), (["", "  "], 3)])
def test_demo_items_refuse_nothing_to_send(texts: list[str], count: int) -> None:
    with pytest.raises(ValueError):
        demo_items(texts, count=count, seed=0)


def test_model_resolution_order(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    assert resolve_model_dir(settings) is None
    bootstrap = settings.default_model_dir
    bootstrap.mkdir(parents=True)
    (bootstrap / "manifest.json").write_text("{}", encoding="utf-8")
    assert resolve_model_dir(settings) == bootstrap
    assert resolve_model_dir(Settings(home=tmp_path, model=tmp_path / "other")) == tmp_path / "other"


def test_stream_printer_prints_each_item_once_and_counts(capsys: pytest.CaptureFixture[str]) -> None:
    printer = StreamPrinter({"e1": "Acme beats"}, quiet=False)
    item = {
        "event_id": "e1",
        "sentiment": "bullish",
        "sentiment_score": 0.8,
        "topic": "Earnings",
        "tickers": ["ACME"],
    }
    printer(item)
    printer(item)
    printer(
        {"event_id": "e2", "sentiment": "bearish", "sentiment_score": -0.5, "topic": "Macro", "tickers": []}
    )
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("bullish +0.80") and "ACME" in lines[0] and lines[0].endswith("Acme beats")
    assert lines[1].startswith("bearish -0.50") and lines[1].endswith("e2")
    assert printer.count() == 2 and printer.count({"e1", "e9"}) == 1 and printer.first_at is not None


def test_exit_when_done_without_demo_is_one_line_error() -> None:
    result = CliRunner().invoke(app, ["run", "--exit-when-done"])
    assert result.exit_code == 2
    assert "--exit-when-done needs --demo" in result.output
    assert "Traceback" not in result.output


def test_run_refuses_a_model_dir_without_manifest(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["run", "--model", str(tmp_path)])
    assert result.exit_code == 2
    assert "is not a finsent model directory" in result.output


def test_service_process_logs_the_command_and_reports_its_exit(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "help.log"
    service = ServiceProcess("--help", env={"FINSENT_HOME": str(tmp_path)}, log_path=log)
    assert service.pid is None and service.exit_code() is None and service.stop() is None
    service.start()  # `python -m services --help`: prints the usage and exits
    assert service.pid is not None
    deadline = time.monotonic() + 60
    while service.exit_code() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert service.exit_code() == 0
    assert "Usage" in service.log_tail(lines=200)
    assert service.stop() == 0 and service.stop() is None  # safe to call twice


def test_stream_printer_escapes_control_characters(capsys: pytest.CaptureFixture[str]) -> None:
    """A message cannot clear the operator's terminal, recolour it or hide text (bidi override)."""
    printer = StreamPrinter({"e\x1b[2J": "Acme \x1b]0;pwned\x07 beats\u202e"}, quiet=False)
    printer(
        {
            "event_id": "e\x1b[2J",
            "sentiment": "bull\x1bish",
            "sentiment_score": 0.8,
            "topic": "Earn\nings",
            "tickers": ["AC\x1bME"],
        }
    )
    printer({"event_id": "e2\r\x1b[1A", "sentiment": "bearish", "sentiment_score": -0.5, "topic": "Macro"})
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out and "\r" not in out
    lines = out.splitlines()
    assert len(lines) == 2
    assert "\\x1b]0;pwned\\x07" in lines[0] and "\\u202e" in lines[0] and "Earn\\nings" in lines[0]
    assert lines[1].endswith("e2\\r\\x1b[1A")
