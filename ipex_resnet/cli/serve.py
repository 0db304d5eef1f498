"""``ipex-resnet serve``: the classifier over HTTP (see :mod:`ipex_resnet.serve`), one process or
``--workers N`` pinned to their own cores."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from ipex_resnet.cli.options import add_model_options, add_plan_options, int8_kwargs, model_kwargs
from ipex_resnet.hardware.cpu import probe
from ipex_resnet.serve import config
from ipex_resnet.serve.config import ServeConfig
from ipex_resnet.serve.process import bind, run_one, setup_logging
from ipex_resnet.serve.workers import assign_cpus, default_workers, read_topology, run_workers


def add_arguments(p: argparse.ArgumentParser) -> None:
    groups = {"model": p.add_argument_group("model"), "service": p.add_argument_group("service")}
    add_model_options(groups["model"])
    add_plan_options(groups["model"])
    config.add_arguments(p, groups)


def main(args: argparse.Namespace) -> int:
    try:
        cfg = ServeConfig.from_args(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    setup_logging(cfg.log_level)
    model = {**model_kwargs(args), **int8_kwargs(args), "backend": args.backend, "precision": args.precision,
             "threads": args.threads, "streams": args.streams}
    topology = read_topology()
    if cfg.workers is None:
        n, why = default_workers(topology, probe(check_torch=False).sockets or 1)
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
        os.sched_setaffinity(0, cpu_sets[0])
        return run_one(cfg_dict, model, sock, threads=threads)
    return run_workers(cfg_dict, model, cpu_sets, sock, cfg.drain_delay_s + cfg.graceful_timeout_s + 15)
