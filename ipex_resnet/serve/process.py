"""One server process (the only one, or a worker): configure logging, load the model, serve."""

from __future__ import annotations

import concurrent.futures
import logging
import signal
import socket
import threading

from ipex_resnet.serve.config import ServeConfig

log = logging.getLogger("ipex_resnet.serve")


def setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def make_loader(model: dict, max_pixels: int):
    def loader():
        from ipex_resnet.core.api import load  # torch, when the engine needs it: after pinning

        options = {k: v for k, v in model.items() if k not in ("model", "threads") and v is not None}
        clf = load(model["model"], **options, threads=model.get("threads"), max_pixels=max_pixels)
        if clf.random_init:
            log.warning("random weights (--weights none): labels and scores are meaningless")
        return clf

    return loader


def run_one(
    cfg_dict: dict,
    model: dict,
    sock: socket.socket | None,
    *,
    threads: int | None = None,
    label: str = "",
    load_first: bool = False,
) -> int:
    """One server process (the only one, or a worker): load, warm up, serve until stopped.

    ``load_first``: accept on ``sock`` only once the model is loaded and warmed up. For a worker, whose
    socket the other workers share: a worker that accepted while loading would answer 503 to requests
    a ready worker could serve. Otherwise the server accepts at once (``/healthz`` answers while loading).
    """
    from ipex_resnet.serve.app import create_app
    from ipex_resnet.serve.server import serve

    cfg = ServeConfig(**cfg_dict)
    setup_logging(cfg.log_level)
    model = {**model, "threads": model.get("threads") or threads}
    if label:
        log.info("%s: loading %s with %s thread(s)", label, model["model"], model["threads"] or "the plan's")
    app = create_app(make_loader(model, cfg.max_pixels), cfg)
    if load_first:
        code = load_before_serving(app.state.service)
        if code is not None:
            return code
    return serve(app, cfg, sock)


def load_before_serving(svc) -> int | None:
    """Load and warm up the model before any server runs: None once it is ready to serve, else the exit
    status: 2 if it failed (logged), 0 if a SIGTERM or SIGINT came first. Stopped while the model still
    loads, the process ends at once, as a server stopped while its model loads does."""
    from ipex_resnet.serve.server import exit_while_loading

    stop = threading.Event()
    old = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        loading = svc.life.start_loading()
        while not stop.is_set() and not loading.done():
            concurrent.futures.wait([loading], timeout=0.1)
        if stop.is_set():
            if not loading.done():
                exit_while_loading(0)
            return 0
        if loading.exception() is not None:
            svc.life.report_load_error(loading.exception())
            return 2
        return None
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


__all__ = ["bind", "load_before_serving", "make_loader", "run_one", "setup_logging"]
