"""Hostile webhook receivers for the tests: raw sockets on 127.0.0.1 that answer slowly,
hugely or never, and record what each connection did (when it opened and closed, the bytes
they sent before Conveyor hung up)."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

Mode = Literal["ok", "drip_headers", "drip_error_body", "huge_ok"]
DRIP_INTERVAL = 0.2
HUGE = 100 * 1024 * 1024


@dataclass
class Connection:
    opened_at: float
    request: bytes = b""
    sent: int = 0
    closed_at: float | None = None  # when our side saw Conveyor close it

    @property
    def host(self) -> str:
        for line in self.request.split(b"\r\n"):
            if line.lower().startswith(b"host:"):
                return line.split(b":", 1)[1].strip().decode()
        return ""


@dataclass
class RawReceiver:
    mode: Mode
    address: str = "127.0.0.1"
    port: int = 0
    connections: list[Connection] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    open_now: int = 0
    max_open: int = 0

    def url(self, path: str = "/hook") -> str:
        return f"http://{self.address}:{self.port}{path}"

    def opened(self) -> Connection:
        with self._lock:
            connection = Connection(time.monotonic())
            self.connections.append(connection)
            self.open_now += 1
            self.max_open = max(self.max_open, self.open_now)
            return connection

    def closed(self, connection: Connection) -> None:
        with self._lock:
            connection.closed_at = time.monotonic()
            self.open_now -= 1

    def serve(self, sock: socket.socket) -> None:
        connection = self.opened()
        try:
            connection.request = _read_request(sock)
            if self.mode == "ok":
                sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            elif self.mode == "drip_headers":
                # A status line, then a header that never ends: one byte at a time.
                self._drip(sock, connection, b"HTTP/1.1 200 OK\r\nX-Drip: ")
            elif self.mode == "drip_error_body":
                head = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 1000000000\r\n\r\n"
                self._drip(sock, connection, head + b"busy, ")
            elif self.mode == "huge_ok":
                head = f"HTTP/1.1 200 OK\r\nContent-Length: {HUGE}\r\n\r\n".encode()
                sock.sendall(head)
                chunk = b"x" * 16384
                while connection.sent < HUGE and not self.stop.is_set():
                    connection.sent += sock.send(chunk)
        except OSError:
            pass  # Conveyor hung up
        finally:
            self.closed(connection)

    def _drip(self, sock: socket.socket, connection: Connection, start: bytes) -> None:
        sock.sendall(start)
        connection.sent += len(start)
        while not self.stop.is_set():
            time.sleep(DRIP_INTERVAL)
            connection.sent += sock.send(b"a")


def _read_request(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return head + b"\r\n\r\n" + rest


@contextmanager
def raw_receiving(receiver: RawReceiver) -> Iterator[RawReceiver]:
    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            sock: socket.socket = self.request
            # A small send buffer: what the server "sent" is close to what reached Conveyor.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
            receiver.serve(sock)

    class Server(socketserver.ThreadingTCPServer):
        daemon_threads = True
        allow_reuse_address = True
        request_queue_size = 64

    server = Server((receiver.address, receiver.port), Handler)
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.stop.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
