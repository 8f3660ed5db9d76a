"""A finsent service (`finsent worker`, `alerter`, `dispatcher`) in a child process, as
`finsent run` supervises it.

A child rather than a thread: the faust worker owns its event loop and signal handling, the
alerter and the dispatcher install their own SIGTERM handlers, and a crash in one must not
take the supervisor down with it. Each runs in its own session so that Ctrl-C reaches the
supervisor only, which then stops things in order (the feed, the worker after its batch in
flight, the alerter after its step in flight, the dispatcher after its sends in flight, the
broker last). Each logs (stdout and stderr) to its own file.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

DEFAULT_STOP_TIMEOUT_S = 30.0


class ServiceProcess:
    def __init__(self, command: str, *, env: Mapping[str, str], log_path: Path) -> None:
        self.command = command
        self._env = {**os.environ, **env}
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "services", self.command],
                env=self._env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def exit_code(self) -> int | None:
        """None while running (or never started)."""
        return self._process.poll() if self._process is not None else None

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT_S) -> int | None:
        """SIGTERM (the service finishes what it has in flight and commits), then SIGKILL
        after `timeout`. Returns the exit code (None if never started). Safe to call twice."""
        process, self._process = self._process, None
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        return process.returncode

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])
