"""A loopback TCP proxy that misbehaves like the networks participants cross.

It forwards bytes between a client and the aggregator without looking at them (TLS stays
end to end) and can cut connections: every connection idle longer than
``idle_cut_seconds`` (like a proxy or NAT that drops idle flows), all connections now
(``break_all``), or the next connection whose client has sent more than a given number
of bytes (``break_upload_after``: a link that breaks in the middle of an upload).
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time
from dataclasses import dataclass


@dataclass
class _Link:
    client: socket.socket
    server: socket.socket
    sent_up: int = 0
    last_activity: float = 0.0


class Proxy:
    def __init__(self, target: str, *, idle_cut_seconds: float | None = None) -> None:
        host, _, port = target.rpartition(":")
        self.target = (host, int(port))
        self.idle_cut_seconds = idle_cut_seconds
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.links: list[_Link] = []
        self.idle_cuts = 0
        self.breaks = 0
        self.connections = 0
        self._upload_limit: int | None = None
        self._lock = threading.Lock()
        self._selector = selectors.DefaultSelector()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def break_all(self) -> None:
        with self._lock:
            for link in list(self.links):
                self._close(link)
                self.breaks += 1

    def break_upload_after(self, limit: int) -> None:
        """Cut the first connection whose client sends more than ``limit`` bytes."""
        with self._lock:
            self._upload_limit = limit

    def close(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)
        with self._lock:
            for link in list(self.links):
                self._close(link)
        self.listener.close()

    def _close(self, link: _Link) -> None:
        for sock in (link.client, link.server):
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(sock)
            sock.close()
        if link in self.links:
            self.links.remove(link)

    def _loop(self) -> None:
        self.listener.setblocking(False)
        self._selector.register(self.listener, selectors.EVENT_READ, None)
        while not self._stopping.is_set():
            for key, _ in self._selector.select(timeout=0.05):
                with self._lock:
                    if key.data is None:
                        self._accept()
                    else:
                        self._forward(key.fileobj, *key.data)
            with self._lock:
                self._cut_idle()

    def _accept(self) -> None:
        client, _ = self.listener.accept()
        try:
            server = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        link = _Link(client, server, last_activity=time.monotonic())
        self.links.append(link)
        self.connections += 1
        self._selector.register(client, selectors.EVENT_READ, (link, server, True))
        self._selector.register(server, selectors.EVENT_READ, (link, client, False))

    def _forward(self, source, link: _Link, destination, upward: bool) -> None:
        if link not in self.links:
            return
        try:
            data = source.recv(1 << 16)
            if not data:
                raise OSError("closed")
            destination.sendall(data)
        except OSError:
            self._close(link)
            return
        link.last_activity = time.monotonic()
        if upward:
            link.sent_up += len(data)
            if self._upload_limit is not None and link.sent_up > self._upload_limit:
                self._upload_limit = None
                self.breaks += 1
                self._close(link)

    def _cut_idle(self) -> None:
        if self.idle_cut_seconds is None:
            return
        now = time.monotonic()
        for link in list(self.links):
            if now - link.last_activity > self.idle_cut_seconds:
                self.idle_cuts += 1
                self._close(link)
