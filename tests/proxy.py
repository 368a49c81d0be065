"""A small HTTP/1.1 proxy in front of a daemon that can lose answers on purpose.

`drops = n`: the next n requests are forwarded and answered by the daemon, but
the proxy hangs up on the client instead of relaying the answer, as a network
that fails after the request arrived does. `unavailable = n`: the next n
requests get a 503 from the proxy itself and never reach the daemon.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import urllib.parse

UNAVAILABLE = json.dumps({"error": "store_unavailable", "message": "the store is down",
                          "details": None}).encode()


def _read_message(sock: socket.socket, buffer: bytearray) -> bytes | None:
    """One request or response with its Content-Length body; None when the peer closed."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        buffer += chunk
    head_end = buffer.index(b"\r\n\r\n") + 4
    length = 0
    for line in bytes(buffer[:head_end]).split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(buffer) < head_end + length:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        buffer += chunk
    message = bytes(buffer[: head_end + length])
    del buffer[: head_end + length]
    return message


def body_of(message: bytes) -> bytes:
    return message.partition(b"\r\n\r\n")[2]


class Proxy:
    def __init__(self, upstream_url: str) -> None:
        parts = urllib.parse.urlsplit(upstream_url)
        self._upstream = (parts.hostname, parts.port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self.drops = 0
        self.unavailable = 0
        self.requests: list[bytes] = []  # every request that arrived, whole
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def _take(self, name: str) -> bool:
        with self._lock:
            if getattr(self, name) > 0:
                setattr(self, name, getattr(self, name) - 1)
                return True
            return False

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self._sockets.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        upstream: socket.socket | None = None
        incoming, answers = bytearray(), bytearray()
        try:
            while (request := _read_message(conn, incoming)) is not None:
                with self._lock:
                    self.requests.append(request)
                if self._take("unavailable"):
                    conn.sendall(b"HTTP/1.1 503 Service Unavailable\r\n"
                                 b"Content-Type: application/json\r\n"
                                 b"Content-Length: %d\r\n\r\n" % len(UNAVAILABLE) + UNAVAILABLE)
                    continue
                if upstream is None:
                    upstream = socket.create_connection(self._upstream)
                    with self._lock:
                        self._sockets.append(upstream)
                upstream.sendall(request)
                answer = _read_message(upstream, answers)
                if answer is None or self._take("drops"):
                    return  # the daemon has acted; the client never hears of it
                conn.sendall(answer)
        except OSError:
            return
        finally:
            for sock in (conn, upstream):
                if sock is not None:
                    sock.close()

    def bodies(self) -> list[dict]:
        with self._lock:
            return [json.loads(body_of(r)) for r in self.requests if body_of(r)]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() on Linux
        self._listener.close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self._accepting.join(5)
        for thread in self._threads:
            thread.join(5)

    def __enter__(self) -> Proxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
