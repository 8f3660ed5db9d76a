"""`finsent run` stops every part it started on SIGTERM (`kill`, `docker stop`, systemd) as it
does on Ctrl-C, and on SIGINT even when it was started with SIGINT ignored (a background job
of a non-interactive shell, which Python leaves ignored): nothing is left running.

Before, a SIGTERM ended the supervisor at once and left the worker, alerter, dispatcher and
scheduler running as orphans, and a SIGINT to a run started in the background did nothing.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .pipeline import run_env
from .test_run_upgrade import alive

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
START_S = 300.0  # a deadline: imports, model load and group joins on a loaded machine
PARTS = ("worker", "alerter", "dispatcher", "scheduler")


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize(
    ("signum", "sigint_ignored"),
    [(signal.SIGTERM, False), (signal.SIGINT, True)],
    ids=["sigterm", "sigint-inherited-ignored"],
)
def test_a_signal_stops_the_run_and_every_part_it_started(
    signum: int, sigint_ignored: bool, saved_model_dir: Path, tmp_path: Path
) -> None:
    env = run_env(tmp_path / "home", FINSENT_MODEL=str(saved_model_dir))
    out = tmp_path / "run.out"
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "services", "run"],
            cwd=REPO_ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            preexec_fn=_ignore_sigint if sigint_ignored else None,
        )
    try:
        deadline = time.monotonic() + START_S
        while "Ctrl-C stops" not in out.read_text(errors="replace"):
            assert proc.poll() is None, out.read_text(errors="replace")[-4000:]
            assert time.monotonic() < deadline, out.read_text(errors="replace")[-4000:]
            time.sleep(0.5)
        text = out.read_text(errors="replace")
        pids = {name: int(pid) for name, pid in re.findall(rf"^({'|'.join(PARTS)})\s+pid (\d+)", text, re.M)}
        assert sorted(pids) == sorted(PARTS), text[-4000:]
        proc.send_signal(signum)
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = out.read_text(errors="replace")
    assert code == 0, text[-4000:]
    assert "stopping: the worker, the alerter and the dispatcher finish" in text, text[-4000:]
    assert not [name for name, pid in pids.items() if alive(pid)], text[-4000:]
