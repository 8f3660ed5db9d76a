"""Real TLS endpoints for the secured-connection tests: stunnel in front of the embedded broker,
and a PostgreSQL server of its own (`initdb`, ssl=on, TLS-only pg_hba) — both with certificates
from a throwaway CA made in the test (tests/tls_certs.py).

Needs Debian's `stunnel4` and the PostgreSQL server binaries (/usr/lib/postgresql/*/bin), which
scripts/test.sh installs; a missing one fails the test with what to install, never skips it.
As root, postgres runs as the `postgres` user (it refuses to run as root).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from services.broker.embedded import free_port
from tests.tls_certs import CA, make_ca

HOST = "127.0.0.1"  # the certificates name it as an IP address: verified like a host name


@dataclass(frozen=True)
class Pki:
    """The files of one throwaway CA and the server certificate it issued for HOST and localhost."""

    ca: CA
    ca_file: Path
    server_cert: Path
    server_key: Path
    other_ca_file: Path  # a CA that signed nothing here: "the wrong CA"


def make_pki(folder: Path) -> Pki:
    folder.mkdir(parents=True, exist_ok=True)
    ca = make_ca("finsent test CA")
    leaf = ca.issue("finsent test server", hosts=(HOST, "localhost"))
    paths = {name: folder / name for name in ("ca.pem", "server.pem", "server.key", "other-ca.pem")}
    paths["ca.pem"].write_bytes(ca.cert_pem)
    paths["server.pem"].write_bytes(leaf.cert_pem)
    paths["server.key"].write_bytes(leaf.key_pem)
    paths["server.key"].chmod(0o600)
    paths["other-ca.pem"].write_bytes(make_ca("some other CA").cert_pem)
    return Pki(ca, paths["ca.pem"], paths["server.pem"], paths["server.key"], paths["other-ca.pem"])


def _require(binary: str, package: str) -> str:
    found = shutil.which(binary)
    if found is None:
        pytest.fail(f"{binary} not found: install Debian's {package} (scripts/test.sh does)", pytrace=False)
    return found


def _wait_port(
    port: int, process: subprocess.Popen[bytes], log: Path, what: str, timeout: float = 20
) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{what} exited with {process.returncode}: {log.read_text(errors='replace')[-2000:]}")
        try:
            with socket.create_connection((HOST, port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"{what} did not listen on {HOST}:{port} within {timeout:g} s")


@contextmanager
def stunnel(accept_port: int, connect_port: int, pki: Pki, folder: Path) -> Iterator[None]:
    """TLS on HOST:accept_port, forwarded in the clear to HOST:connect_port."""
    binary = _require("stunnel4", "stunnel4") if shutil.which("stunnel4") else _require("stunnel", "stunnel4")
    conf, log = folder / "stunnel.conf", folder / "stunnel.log"
    conf.write_text(
        "foreground = yes\n"
        f"output = {log}\n"
        "pid =\n"
        "[kafka]\n"
        f"accept = {HOST}:{accept_port}\n"
        f"connect = {HOST}:{connect_port}\n"
        f"cert = {pki.server_cert}\n"
        f"key = {pki.server_key}\n"
    )
    with (folder / "stunnel.out").open("wb") as out:
        process = subprocess.Popen([binary, str(conf)], stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_port(accept_port, process, folder / "stunnel.out", "stunnel")
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _postgres_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        pytest.fail("PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin", pytrace=False)
    return Path(found[-1]).parent


def _as_postgres(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@dataclass(frozen=True)
class TlsPostgres:
    port: int

    def url(self, **query: str) -> str:
        tail = "&".join(f"{k}={v}" for k, v in query.items())
        return f"postgresql+psycopg://postgres@{HOST}:{self.port}/postgres" + (f"?{tail}" if tail else "")


@contextmanager
def tls_postgres(pki: Pki) -> Iterator[TlsPostgres]:
    """A throwaway cluster (own initdb) that accepts TLS connections only (pg_hba: hostssl)."""
    bin_dir = _postgres_bin()
    # Not under pytest's tmp_path: the postgres user must be able to reach its data directory.
    folder = Path(tempfile.mkdtemp(prefix="finsent-tls-pg-"))
    data = folder / "data"
    port = free_port()
    try:
        shutil.copy(pki.server_cert, folder / "server.pem")
        shutil.copy(pki.server_key, folder / "server.key")
        (folder / "server.key").chmod(0o600)
        if os.geteuid() == 0:
            shutil.chown(folder, "postgres", "postgres")
            for name in ("server.pem", "server.key"):
                shutil.chown(folder / name, "postgres", "postgres")
        subprocess.run(
            _as_postgres(
                [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync"]
            ),
            check=True,
            capture_output=True,
        )
        (data / "pg_hba.conf").write_text(
            f"local all all trust\nhostssl all all {HOST}/32 trust\n"  # no `host` line: no plaintext
        )
        log = folder / "postgres.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                _as_postgres(
                    [
                        str(bin_dir / "postgres"),
                        "-D",
                        str(data),
                        "-p",
                        str(port),
                        "-k",
                        str(folder),
                        "-c",
                        f"listen_addresses={HOST}",
                        "-c",
                        "ssl=on",
                        "-c",
                        f"ssl_cert_file={folder / 'server.pem'}",
                        "-c",
                        f"ssl_key_file={folder / 'server.key'}",
                        "-c",
                        "fsync=off",
                    ]
                ),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            server = TlsPostgres(port)
            deadline = time.monotonic() + 30
            while True:
                try:
                    url = f"postgresql://postgres@{HOST}:{port}/postgres?sslmode=verify-full&sslrootcert={pki.ca_file}"
                    psycopg.connect(url, connect_timeout=2).close()
                    break
                except psycopg.OperationalError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        pytest.fail(f"TLS postgres did not start: {log.read_text(errors='replace')[-2000:]}")
                    time.sleep(0.2)
            yield server
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
