"""A TCP proxy on loopback that holds every chunk for `delay` seconds each way: a slow network between
one client and a real server (etcd here), without touching the server. `delay` can change while it
runs; the proxy is stopped by its own handle, with every connection it opened."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator


class SlowProxy:
    def __init__(self, upstream: tuple[str, int], *, delay: float = 0.0) -> None:
        self.upstream = upstream
        self.delay = delay
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._stop = threading.Event()
        self._sockets: list[socket.socket] = [self._listener]
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, name="slow-proxy", daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
                server = socket.create_connection(self.upstream, timeout=10)
            except OSError:
                return
            with self._lock:
                self._sockets += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while not self._stop.is_set():
                chunk = source.recv(65536)
                if not chunk:
                    break
                time.sleep(self.delay)  # the slow network itself
                target.sendall(chunk)
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            for s in self._sockets:
                with contextlib.suppress(OSError):
                    s.close()


@contextlib.contextmanager
def slow_proxy(upstream: tuple[str, int], *, delay: float = 0.0) -> Iterator[SlowProxy]:
    proxy = SlowProxy(upstream, delay=delay)
    try:
        yield proxy
    finally:
        proxy.close()
