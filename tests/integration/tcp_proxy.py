"""A TCP proxy for tests that take a server away from a client without touching the server.

`TcpProxy(host, port)` listens on a free local port and forwards every connection to the
target. `outage()` makes the target look down: the proxy stops listening (new connections are
refused: ECONNREFUSED) and cuts every open connection in both directions. `restore()`
listens on the same port again. Plain threads: one accept loop, two pumps per connection.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType
from typing import Self

ACCEPT_POLL_S = 0.1
CONNECT_TIMEOUT_S = 5.0


class TcpProxy:
    def __init__(self, target_host: str, target_port: int, *, host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.host = host
        self.port = 0  # chosen at the first start
        self.accepted = 0  # connections forwarded
        self.cut = 0  # connections cut by outage()
        self._lock = threading.Lock()
        self._pairs: set[tuple[socket.socket, socket.socket]] = set()
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._stop_accepting = threading.Event()

    # -- lifecycle

    def start(self) -> Self:
        self._listen()
        return self

    def close(self) -> None:
        self._stop_listening()
        self._cut_all()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def listening(self) -> bool:
        return self._listener is not None

    def outage(self) -> None:
        """Refuse new connections and cut the open ones."""
        self._stop_listening()
        self._cut_all()

    def restore(self) -> None:
        """Accept and forward connections again, on the same port."""
        if self._listener is None:
            self._listen()

    # -- internals

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(64)
        listener.settimeout(ACCEPT_POLL_S)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._stop_accepting = threading.Event()
        self._accept_thread = threading.Thread(
            target=self._accept_loop, args=(listener, self._stop_accepting), name="proxy-accept", daemon=True
        )
        self._accept_thread.start()

    def _stop_listening(self) -> None:
        listener, thread = self._listener, self._accept_thread
        if listener is None or thread is None:
            return
        self._stop_accepting.set()
        thread.join(timeout=5)
        listener.close()  # from here on, connecting to the port is refused
        self._listener = self._accept_thread = None

    def _accept_loop(self, listener: socket.socket, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if stop.is_set():
                client.close()
                return
            try:
                upstream = socket.create_connection(self.target, timeout=CONNECT_TIMEOUT_S)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            client.settimeout(None)
            pair = (client, upstream)
            with self._lock:
                self._pairs.add(pair)
                self.accepted += 1
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst, pair), daemon=True).start()

    def _pump(
        self, src: socket.socket, dst: socket.socket, pair: tuple[socket.socket, socket.socket]
    ) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        self._drop(pair)

    def _drop(self, pair: tuple[socket.socket, socket.socket]) -> bool:
        with self._lock:
            if pair not in self._pairs:
                return False
            self._pairs.discard(pair)
        for sock in pair:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes the other pump, the peer sees the end
            sock.close()
        return True

    def _cut_all(self) -> None:
        with self._lock:
            pairs = list(self._pairs)
        self.cut += sum(self._drop(pair) for pair in pairs)
