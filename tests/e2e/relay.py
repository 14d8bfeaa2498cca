"""A TCP relay whose connections to the server come from another loopback address, so a
test can call the server as a different client address (127.0.0.2, 127.0.0.3, ...)
without a proxy the server trusts: the server sees the relay's source as the peer."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import grpc


class Relay:
    def __init__(self, target: str, source_ip: str) -> None:
        host, port = target.rsplit(":", 1)
        self._target = (host, int(port))
        self._source = (source_ip, 0)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._sockets: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                downstream, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self._target, source_address=self._source)
            self._sockets += [downstream, upstream]
            for src, dst in ((downstream, upstream), (upstream, downstream)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()


@contextlib.contextmanager
def channel_from(target: str, source_ip: str) -> Iterator[grpc.Channel]:
    """A channel to target whose calls reach it from source_ip."""
    relay = Relay(target, source_ip)
    try:
        with grpc.insecure_channel(relay.address) as channel:
            yield channel
    finally:
        relay.close()
