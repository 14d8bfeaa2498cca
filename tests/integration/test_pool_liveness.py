"""The pool's liveness check (db/engine.py): a pooled connection the server ended is
noticed at checkout and replaced, the call never sees it; so is one idle long enough
for a middlebox to have forgotten it; a healthy one in use is handed out without a
round trip."""

from __future__ import annotations

import select
import socket
import struct
import threading
import time

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from veritas_grpc.db import engine as engine_module
from veritas_grpc.db.engine import make_engine, make_session_factory


@pytest.fixture
def engine(fresh_database):
    engine = make_engine(fresh_database("pool_liveness"), pool_size=3)
    yield engine
    engine.dispose()


@pytest.fixture
def pings(engine: Engine, monkeypatch) -> list[int]:
    """Each ping the checkout sends, by the backend it went to."""
    sent: list[int] = []
    ping = engine.dialect.do_ping

    def counted(dbapi_connection) -> bool:
        sent.append(dbapi_connection.info.backend_pid)
        return ping(dbapi_connection)

    monkeypatch.setattr(engine.dialect, "do_ping", counted)
    return sent


def _backend(engine: Engine) -> int:
    with make_session_factory(engine)() as session:
        return session.execute(text("SELECT pg_backend_pid()")).scalar_one()


def _terminate(engine: Engine, pids: list[int]) -> None:
    """As a restart, a failover or an administrator would: from another connection,
    waiting until each backend has exited (its socket closed)."""
    outsider = create_engine(engine.url, isolation_level="AUTOCOMMIT")
    with outsider.connect() as connection:
        ends = "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000)) FROM unnest(:p) pid"
        ended = connection.execute(text(ends), {"p": pids}).scalar_one()
    outsider.dispose()
    assert ended == len(pids)


def test_a_healthy_connection_is_reused_without_a_ping(engine, pings):
    first = _backend(engine)
    assert [_backend(engine) for _ in range(5)] == [first] * 5
    assert pings == []


def test_a_connection_the_server_ended_is_replaced_before_use(engine, pings):
    first = _backend(engine)
    _terminate(engine, [first])
    replacement = _backend(engine)  # no error: the dead connection never reached the call
    assert replacement != first
    assert pings == [first]
    assert _backend(engine) == replacement and pings == [first]


def test_every_pooled_connection_ended_at_once_is_replaced(engine, pings):
    """A restart ends them all: the first checkout that notices renews the pool."""
    held = [engine.connect() for _ in range(3)]
    pids = [c.execute(text("SELECT pg_backend_pid()")).scalar_one() for c in held]
    for connection in held:
        connection.close()
    _terminate(engine, pids)
    fresh = {_backend(engine) for _ in range(3)}
    assert fresh.isdisjoint(pids)
    assert len(pings) == 1  # the older connections were discarded unpinged


class ForgetfulProxy:
    """TCP in front of the test server's socket, which can forget its connections as a
    NAT or a load balancer does after an idle timeout: the server's side is closed, the
    client hears nothing until it sends, and then gets a reset."""

    def __init__(self, upstream: str) -> None:
        self._upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._open: list[threading.Event] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def forget(self) -> None:
        """Forget the connections open now (new ones are passed on)."""
        for forgotten in self._open:
            forgotten.set()

    def _accept(self) -> None:
        while True:
            client, _ = self._listener.accept()
            server = socket.socket(socket.AF_UNIX)
            server.connect(self._upstream)
            forgotten = threading.Event()
            self._open.append(forgotten)
            threading.Thread(
                target=self._pump, args=(client, server, forgotten), daemon=True
            ).start()

    @staticmethod
    def _pump(client: socket.socket, server: socket.socket, forgotten: threading.Event) -> None:
        while not forgotten.is_set():
            ready, _, _ = select.select([client, server], [], [], 0.05)
            for source in ready:
                data = source.recv(65536)
                if not data:
                    client.close()
                    server.close()
                    return
                (server if source is client else client).sendall(data)
        server.close()
        select.select([client], [], [])  # the client's next packet...
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()  # ... is answered with a reset


@pytest.mark.parametrize("ping_after_idle_seconds", [0.2, 60.0])
def test_a_connection_idle_long_enough_is_pinged_and_replaced(
    fresh_database, monkeypatch, ping_after_idle_seconds
):
    """Idle past the threshold: pinged, found dead, replaced, and the call goes on. Not
    yet idle that long (the control): the forgotten connection reaches the call."""
    url = make_url(fresh_database("pool_idle"))
    query = dict(url.query)
    directory = query.pop("host")
    proxy = ForgetfulProxy(f"{directory}/.s.PGSQL.{url.port or 5432}")
    tcp = url.set(host="127.0.0.1", port=proxy.port, query=query)
    engine = make_engine(tcp.render_as_string(hide_password=False), pool_size=1)
    monkeypatch.setattr(engine_module, "PING_AFTER_IDLE_SECONDS", ping_after_idle_seconds)
    try:
        first = _backend(engine)
        proxy.forget()
        time.sleep(0.5)
        if ping_after_idle_seconds < 0.5:
            assert _backend(engine) != first
        else:
            with pytest.raises(OperationalError):
                _backend(engine)
    finally:
        engine.dispose()
