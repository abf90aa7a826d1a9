"""Running the app under uvicorn: on a socket bound first (so port 0 works and the real port is known).

:func:`serve_forever` runs in the main thread until SIGINT or SIGTERM, then drains: uvicorn stops
accepting connections, waits up to ``shutdown_timeout_s`` for the requests in flight, and runs the app's
shutdown (the batcher finishes its queue). :class:`BackgroundServer` runs the same server in a thread
(tests, the load tool), stopped by :meth:`BackgroundServer.stop` with the same drain.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
import time

from retinaface_trt.errors import RetinaFaceError

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port); port 0 picks a free one. RetinaFaceError if that fails."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as error:
        raise RetinaFaceError(f"cannot listen on {host}:{port}: {error.strerror or error}; "
                              "check --host") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as error:
        sock.close()
        raise RetinaFaceError(f"cannot listen on {host}:{port}: {error.strerror or error}; "
                              "pick another --port or --host") from None
    return sock


def url_of(sock: socket.socket) -> str:
    """``http://HOST:PORT`` of a bound socket (IPv6 hosts in brackets)."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def uvicorn_server(app, shutdown_timeout_s: int = 30, verbose: bool = False, header_timeout_s: float = 10):
    """A ``uvicorn.Server`` for ``app``; its loggers go through the project's logging (no config of its own).

    A connection that has not sent complete request headers ``header_timeout_s`` seconds after it opened, or
    after its previous answer, is closed (uvicorn itself waits for headers as long as the client likes).
    """
    import uvicorn

    config = uvicorn.Config(app, lifespan="on", log_config=None, access_log=verbose,
                            timeout_graceful_shutdown=shutdown_timeout_s or None,
                            http=_header_timeout_protocol(header_timeout_s))
    return uvicorn.Server(config)


def _header_timeout_protocol(seconds: float):
    """uvicorn's h11 protocol, closing a connection whose request headers do not arrive within ``seconds``."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderTimeoutProtocol(H11Protocol):
        _header_timer = None

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._arm_header_timer()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm_header_timer()

        def connection_lost(self, exc) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
            super().connection_lost(exc)

        def _arm_header_timer(self) -> None:
            waiting_for = self.cycle    # a request whose headers complete replaces the cycle
            if self._header_timer is not None:
                self._header_timer.cancel()
            self._header_timer = self.loop.call_later(seconds, self._headers_late, waiting_for)

        def _headers_late(self, waiting_for) -> None:
            idle = self.cycle is None or self.cycle.response_complete
            if self.cycle is waiting_for and idle and not self.transport.is_closing():
                self.transport.close()

    return HeaderTimeoutProtocol


def serve_forever(server, sock: socket.socket) -> None:
    """Run ``server`` on ``sock`` until SIGINT/SIGTERM, then drain and return (no signal is re-raised).

    uvicorn handles the signals while it runs and raises them again once it has stopped, so the
    handlers in place around it absorb them (a drained server ends as a normal return) and, for a
    signal that comes before uvicorn's handlers are in place, ask the server to stop.
    """
    def stop(*_):
        server.should_exit = True

    previous = {sig: signal.signal(sig, stop) for sig in STOP_SIGNALS}
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class BackgroundServer:
    """``server`` (from :func:`uvicorn_server`) running on ``sock`` in a thread; a context manager.

    ``url`` is where it listens; ``stop()`` drains as a signal would. ``start()`` waits up to
    ``timeout`` seconds for uvicorn to be started (the app's startup included).
    """

    def __init__(self, server, sock: socket.socket):
        self.server, self.sock, self.url = server, sock, url_of(sock)
        self._thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                                        name="retinaface-uvicorn", daemon=True)

    def start(self, timeout: float = 30.0) -> "BackgroundServer":
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RetinaFaceError(f"the server at {self.url} did not start within {timeout:g} s")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 60.0) -> None:
        self.server.should_exit = True
        self._thread.join(timeout)
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self) -> "BackgroundServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
