"""Running the app on uvicorn: one server on a given socket, and :class:`ServerThread` for tests, load
tests and notebooks. Signals: the first SIGTERM/SIGINT turns readiness 503 at once, then after
``drain_delay`` the server stops accepting, finishes every admitted request (up to
``graceful_timeout``) and exits 0."""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time

from ipex_resnet.serve.config import ServeConfig
from ipex_resnet.serve.connections import guarded_protocol

log = logging.getLogger("ipex_resnet.serve")


def make_server(app, cfg: ServeConfig):
    import uvicorn

    svc = app.state.service
    life = svc.life

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame):
            if life.draining or cfg.drain_delay_s <= 0:
                life.draining = True
                return super().handle_exit(sig, frame)
            life.draining = True  # readiness first; requests are still served during the delay
            log.info("draining: /readyz answers 503; stopping in %g s", cfg.drain_delay_s)
            timer = threading.Timer(cfg.drain_delay_s, super().handle_exit, (sig, frame))
            timer.daemon = True
            timer.start()

    config = uvicorn.Config(
        app,
        host=cfg.host,
        port=cfg.port,
        log_level=cfg.log_level,
        access_log=cfg.access_log,
        lifespan="on",
        # uvicorn annotates these int but waits on them as seconds (asyncio): fractions work and are kept
        timeout_graceful_shutdown=cfg.graceful_timeout_s,  # type: ignore[arg-type]
        timeout_keep_alive=cfg.keepalive_timeout_s,  # type: ignore[arg-type]
        http=guarded_protocol(svc.connections),
        log_config=None,
    )
    return Server(config)


def serve(app, cfg: ServeConfig, sock: socket.socket | None = None) -> int:
    """Run until stopped (in the main thread). Returns the exit status: 0, or 2 if the model failed to
    load or the port could not be bound."""
    server = make_server(app, cfg)
    svc = app.state.service
    fatal = {"code": 0}

    def on_fatal(exc):
        fatal["code"] = 2
        server.should_exit = True

    svc.life.on_fatal = on_fatal
    # uvicorn re-raises the signal it stopped on once it is done, to the handler that was installed
    # before it ran: with this one, a drained SIGTERM ends the process with status 0.
    signal.signal(signal.SIGTERM, lambda *a: None)
    server.run(sockets=[sock] if sock is not None else None)
    code = 2 if fatal["code"] == 0 and not server.started else fatal["code"]  # 2: could not bind, or
    # lifespan failed (uvicorn logged why)
    loading = svc.life.load_thread
    if loading is not None and loading.is_alive():
        exit_while_loading(code)
    return code


def exit_while_loading(code: int) -> None:
    """End the process now: it was stopped while the model was still loading (compiling, on a cold
    cache). Nothing was admitted, so nothing is lost by not waiting. Interpreter teardown is skipped:
    it would run under the loader thread (torch's static destructors). An artifact half-written to the
    cache is in a temporary directory that is never published."""
    log.warning("stopped while the model was still loading; exiting without waiting for it")
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


class ServerThread:
    """Run the service in a background thread on a free loopback port (tests, load tests, notebooks).

    with ServerThread(create_app(loader)) as srv:
        httpx.get(srv.url + "/readyz")
    """

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"):
        self.app = app
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.host, self.port = self.sock.getsockname()[:2]
        self.url = f"http://{self.host}:{self.port}"
        cfg = app.state.config
        cfg.host, cfg.port, cfg.log_level = self.host, self.port, log_level
        self.server = make_server(app, cfg)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True, name="ipex-resnet-server"
        )

    @property
    def state(self):
        return self.app.state.service

    service = state

    def start(self, timeout_s: float = 30.0) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        return self

    def wait_ready(self, timeout_s: float = 120.0) -> ServerThread:
        deadline = time.monotonic() + timeout_s
        while not self.state.ready:
            if self.state.load_error:
                raise RuntimeError(f"the model failed to load: {self.state.load_error}")
            if time.monotonic() > deadline:
                raise TimeoutError("the model did not become ready")
            time.sleep(0.02)
        return self

    def stop(self, timeout_s: float = 60.0) -> None:
        self.state.life.draining = True
        self.server.should_exit = True
        self.thread.join(timeout_s)
        self.sock.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
