"""`services.cli.app.main`: the last resort for an error nothing else handles (a bug) is one
line with exit code 1 and the traceback in a file, unless FINSENT_LOG_LEVEL=DEBUG asks for the
traceback itself."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.settings import get_settings

# The module, not the Typer object that `services.cli` exports under the same name.
cli_app = importlib.import_module("services.cli.app")


@pytest.fixture
def run_main(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    monkeypatch.chdir(tmp_path)  # no .env of the caller
    monkeypatch.setattr(cli_app, "configure_logging", lambda *args: None)  # leave pytest's logging alone
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def main_with(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["finsent", *args])
    get_settings.cache_clear()
    with pytest.raises(SystemExit) as exited:
        cli_app.main()
    return int(exited.value.code or 0)


def broken_config(*args: object, **kwargs: object) -> None:
    raise RuntimeError("something\n  went wrong")


def test_an_unexpected_error_is_one_line_with_exit_1_and_its_traceback_kept(
    run_main: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    run_main.setattr("services.cli.config.setting_sources", broken_config)
    run_main.setenv("FINSENT_HOME", str(tmp_path / "home"))
    assert main_with(run_main, "config") == 1
    captured = capsys.readouterr()
    (kept,) = (tmp_path / "home" / "logs").glob("crash-*.txt")
    assert captured.err == (
        "finsent: error: unexpected RuntimeError: something went wrong (this is a bug: please report it; "
        f"its traceback is in {kept})\n"
    )
    assert "Traceback (most recent call last)" in kept.read_text()
    assert "broken_config" in kept.read_text()


def test_without_a_writable_home_the_line_says_how_to_see_the_traceback(
    run_main: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    run_main.setattr("services.cli.config.setting_sources", broken_config)
    home = tmp_path / "home"
    home.mkdir()
    (home / "logs").write_text("")  # a file where the logs directory should be
    run_main.setenv("FINSENT_HOME", str(home))
    assert main_with(run_main, "config") == 1
    assert capsys.readouterr().err == (
        "finsent: error: unexpected RuntimeError: something went wrong (this is a bug: please report it; "
        "FINSENT_LOG_LEVEL=DEBUG shows the traceback)\n"
    )


def test_with_debug_logging_the_error_is_raised(run_main: pytest.MonkeyPatch) -> None:
    run_main.setattr("services.cli.config.setting_sources", broken_config)
    run_main.setenv("FINSENT_LOG_LEVEL", "debug")
    with pytest.raises(RuntimeError, match="went wrong"):
        main_with(run_main, "config")


def test_interrupts_and_exits_keep_their_codes(
    run_main: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    run_main.setattr("services.cli.config.setting_sources", interrupted)
    assert main_with(run_main, "config") == 130  # typer turns it into exit 130 itself
    assert "unexpected" not in capsys.readouterr().err

    def exits(*args: object, **kwargs: object) -> None:
        sys.exit(3)

    run_main.setattr("services.cli.config.setting_sources", exits)
    assert main_with(run_main, "config") == 3
    assert capsys.readouterr().err == ""


def _groups() -> list[list[str]]:
    """Every command group of `finsent` that shows its help when named without a subcommand
    (`finsent` itself included), as its arguments: found in click's tree, so a new group is
    checked too."""
    import typer.main
    from typer.core import TyperGroup

    found: list[list[str]] = []

    def walk(command: object, path: list[str]) -> None:
        if isinstance(command, TyperGroup):
            if command.no_args_is_help:
                found.append(path)
            for name, sub in command.commands.items():
                walk(sub, [*path, name])

    walk(typer.main.get_command(cli_app.app), [])
    return found


GROUPS = _groups()


def test_the_groups_are_found() -> None:
    assert {"alerts", "db", "models"} <= {" ".join(path) for path in GROUPS}
    assert [] in GROUPS and ["dashboard", "users"] in GROUPS


@pytest.mark.parametrize("group", GROUPS, ids=lambda path: " ".join(["finsent", *path]))
def test_a_group_without_a_subcommand_shows_its_help_even_with_a_bad_setting(
    run_main: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], group: list[str]
) -> None:
    run_main.setenv("FINSENT_ALERT_P_HIGH", "abc")
    assert main_with(run_main, *group) == 2  # as with good settings: help, exit 2
    captured = capsys.readouterr()
    assert f"Usage: {' '.join(['finsent', *group])} [OPTIONS] COMMAND [ARGS]..." in captured.out
    assert captured.err == ""


def test_a_command_still_reports_a_bad_setting(
    run_main: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`finsent dashboard` alone serves the dashboard (a command, not help), and a group with
    an unknown subcommand is not asking for help: both need the settings first."""
    run_main.setenv("FINSENT_ALERT_P_HIGH", "abc")
    for args in (["dashboard"], ["alerts", "nosuch"]):
        assert main_with(run_main, *args) == 2
        assert capsys.readouterr().err.startswith("finsent: error: FINSENT_ALERT_P_HIGH='abc': ")
