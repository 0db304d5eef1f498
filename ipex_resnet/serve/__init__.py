"""``ipex-resnet serve``: the classifier over HTTP (Starlette + uvicorn), with dynamic batching, limits
that hostile clients cannot hold, the Open Inference Protocol next to ``/v1``, Prometheus metrics, and
``--workers N`` processes pinned to their own cores.

Parts: :mod:`.config` (every option, once), :mod:`.app` (the request pipeline and routes),
:mod:`.oip` (``/v2``), :mod:`.limits` and :mod:`.connections` (admission and limits),
:mod:`.batching`, :mod:`.metrics`, :mod:`.server` (uvicorn), :mod:`.workers` (processes and pinning),
:mod:`.errors` (typed errors -> status and code).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import socket
import sys

from .config import ServeConfig

log = logging.getLogger("ipex_resnet.serve")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..cli import add_model_options, add_plan_options
    from . import config

    groups = {"model": p.add_argument_group("model"), "service": p.add_argument_group("service")}
    add_model_options(groups["model"])
    add_plan_options(groups["model"])
    config.add_arguments(p, groups)


def _logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def make_loader(model: dict, max_pixels: int):
    def loader():
        from ..loader import load

        clf = load(model["model"], weights=model["weights"], backend=model["backend"],
                   precision=model["precision"], threads=model.get("threads"), max_pixels=max_pixels)
        if clf.random_init:
            log.warning("random weights (--weights none): labels and scores are meaningless")
        return clf

    return loader


def run_one(cfg_dict: dict, model: dict, sock: socket.socket | None, *, threads: int | None = None,
            label: str = "") -> int:
    """One server process (the only one, or a worker): load, warm up, serve until stopped."""
    from .app import create_app
    from .server import serve

    cfg = ServeConfig(**cfg_dict)
    _logging(cfg.log_level)
    model = {**model, "threads": model.get("threads") or threads}
    if label:
        log.info("%s: loading %s with %s thread(s)", label, model["model"], model["threads"] or "the plan's")
    app = create_app(make_loader(model, cfg.max_pixels), cfg)
    return serve(app, cfg, sock)


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def main(args: argparse.Namespace) -> int:
    from ..cpu import probe
    from .workers import assign_cpus, default_workers, read_topology, run_workers

    try:
        cfg = ServeConfig.from_args(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _logging(cfg.log_level)
    model = {"model": args.model, "weights": args.weights, "backend": args.backend, "precision": args.precision,
             "threads": args.threads}
    topology = read_topology()
    if cfg.workers is None:
        n, why = default_workers(topology, probe(check_torch=False, check_ipex=False).sockets or 1)
    else:
        n, why = cfg.workers, "--workers"
    cpu_sets = assign_cpus(topology, n)  # ConfigError: the CLI prints it
    try:
        sock = bind(cfg.host, cfg.port)
    except OSError as exc:
        print(f"error: cannot listen on {cfg.host}:{cfg.port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    host, port = sock.getsockname()[:2]
    threads = args.threads or len(cpu_sets[0])
    print(f"ipex-resnet serve: http://{host}:{port} -- {n} worker(s), CPUs "
          f"{' | '.join(','.join(map(str, s)) for s in cpu_sets)}, {threads} thread(s) each ({why})",
          file=sys.stderr, flush=True)
    cfg_dict = dataclasses.asdict(cfg)
    if n == 1:
        import os

        os.sched_setaffinity(0, cpu_sets[0])
        return run_one(cfg_dict, model, sock, threads=threads)
    return run_workers(cfg_dict, model, cpu_sets, sock, cfg.drain_delay_s + cfg.graceful_timeout_s + 15)


def __getattr__(name: str):  # the app's parts, imported on first use (they need starlette and uvicorn)
    if name in ("create_app", "Service"):
        from . import app

        return getattr(app, name)
    if name == "ServerThread":
        from .server import ServerThread

        return ServerThread
    if name in ("Batcher", "QueueFull", "bucket_sizes", "warmup_sizes"):
        from . import batching

        return getattr(batching, name)
    raise AttributeError(name)


__all__ = ["Batcher", "QueueFull", "ServeConfig", "ServerThread", "Service", "add_arguments", "bucket_sizes",
           "create_app", "main", "run_one", "warmup_sizes"]
