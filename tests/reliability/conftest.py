"""Fault fixtures: the e2e cluster (real Celery processes on Redis and PostgreSQL) and a
TCP proxy in front of PostgreSQL that a test can cut and restore."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest
from sqlalchemy.engine import make_url

from tests.e2e.conftest import cluster  # noqa: F401 (fixture)
from tests.service.conftest import database_url, pg_database_url, sqlite_url  # noqa: F401 (fixtures)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class CuttableProxy:
    """Forwards 127.0.0.1:``port`` to ``target``; ``cut()`` drops every connection and
    refuses new ones (accepted, then closed at once) until ``restore()``."""

    def __init__(self, *, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._up = threading.Event()
        self._up.set()
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self) -> None:
        self._up.clear()
        with self._lock:
            sockets, self._open = self._open, []
        for sock in sockets:
            _close(sock)

    def restore(self) -> None:
        self._up.set()

    def close(self) -> None:
        self._closed = True
        self.cut()
        _close(self._listener)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._up.is_set():
                _close(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._open += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(src, dst), daemon=True).start()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while chunk := src.recv(65536):
            dst.sendall(chunk)
    except OSError:
        pass
    finally:
        _close(src)
        _close(dst)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


@pytest.fixture
def proxied_pg_url(pg_database_url: str) -> Iterator[tuple[str, CuttableProxy]]:  # noqa: F811
    """A fresh PostgreSQL database reached through a proxy the test can cut."""
    url = make_url(pg_database_url)
    proxy = CuttableProxy(target=(url.host or "127.0.0.1", url.port or 5432))
    try:
        proxied = url.set(host="127.0.0.1", port=proxy.port)
        yield proxied.render_as_string(hide_password=False), proxy
    finally:
        proxy.close()


@pytest.fixture
def fast_reclaim_cluster(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """The e2e cluster whose control worker reclaims a trial silent for 3 s, twice at most."""
    monkeypatch.setenv("SCALETUNE_HEARTBEAT_GRACE_SECONDS", "3")
    monkeypatch.setenv("SCALETUNE_MAX_ATTEMPTS", "2")
    return request.getfixturevalue("cluster")
