"""``ipex-resnet serve``: the classifier over HTTP (see :mod:`ipex_resnet.serve`), one process or
``--workers N`` pinned to their own cores."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
from typing import TYPE_CHECKING

from ipex_resnet.benchmarking import serve_tune
from ipex_resnet.cli import serve_ray
from ipex_resnet.cli.options import add_model_options, add_plan_options, int8_kwargs, model_spec
from ipex_resnet.hardware.cpu import probe
from ipex_resnet.serve import config
from ipex_resnet.serve.config import ServeConfig
from ipex_resnet.serve.process import bind, run_one, setup_logging
from ipex_resnet.serve.workers import assign_cpus, default_workers, read_topology, run_workers

if TYPE_CHECKING:
    from ipex_resnet.models.spec import ModelSpec


def add_arguments(p: argparse.ArgumentParser) -> None:
    groups = {"model": p.add_argument_group("model"), "service": p.add_argument_group("service")}
    add_model_options(groups["model"])
    add_plan_options(groups["model"])
    config.add_arguments(p, groups)
    serve_ray.add_arguments(p.add_argument_group("Ray Serve (docs/scale-out.md)"))


def main(args: argparse.Namespace) -> int:
    try:
        cfg = ServeConfig.from_args(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    setup_logging(cfg.log_level)
    spec = model_spec(args)
    plan = {
        **int8_kwargs(args),
        "backend": args.backend,
        "precision": args.precision,
        "threads": args.threads,
        "streams": args.streams,
    }
    model = {"model": spec.model, **spec.load_kwargs(), **plan}
    if serve_ray.wanted(args):
        return serve_ray.main(args, cfg, model)
    topology = read_topology()
    try:
        sock = bind(cfg.host, cfg.port)  # first: a taken port fails before minutes of tuning
    except OSError as exc:
        print(f"error: cannot listen on {cfg.host}:{cfg.port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    tuned = _tuned(args, cfg, spec, plan, topology) if cfg.tune else None
    if tuned is not None:
        best = tuned["best"]
        n, why = best["workers"], "--tune"
        model["streams"] = best["streams"]
        cfg = dataclasses.replace(cfg, workers=n, max_wait_ms=best["max_wait_ms"], tuned=serve_tune.describe(tuned))
    elif cfg.workers is None:
        n, why = default_workers(topology, probe(check_torch=False).sockets or 1)
    else:
        n, why = cfg.workers, "--workers"
    cpu_sets = assign_cpus(topology, n)  # ConfigError: the CLI prints it
    host, port = sock.getsockname()[:2]
    threads = args.threads or (tuned["best"]["threads"] if tuned else None) or len(cpu_sets[0])
    print(
        f"ipex-resnet serve: http://{host}:{port} -- {n} worker(s), CPUs "
        f"{' | '.join(','.join(map(str, s)) for s in cpu_sets)}, {threads} thread(s) each ({why})",
        file=sys.stderr,
        flush=True,
    )
    cfg_dict = dataclasses.asdict(cfg)
    if n == 1:
        os.sched_setaffinity(0, cpu_sets[0])
        return run_one(cfg_dict, model, sock, threads=threads)
    return run_workers(cfg_dict, model, cpu_sets, sock, cfg.drain_delay_s + cfg.graceful_timeout_s + 15)


def _tuned(args: argparse.Namespace, cfg: ServeConfig, spec: ModelSpec, plan: dict, topology) -> dict | None:
    """``--tune``: the cached choice for this machine, model (``spec`` with the ``plan`` options) and
    target, or measure the candidates now (each one this command run as a child on a free loopback port,
    with ``--no-tune``). None when the user fixed everything it would choose."""
    from ipex_resnet.core.policy import requested_streams
    from ipex_resnet.errors import BackendUnavailable

    fixed_streams, _ = requested_streams(args.streams, os.environ)  # a bad value: ConfigError, one line
    if cfg.workers is not None and fixed_streams is not None:
        return None
    try:
        serve_tune.require_loadgen()
    except BackendUnavailable as exc:
        print(f"ipex-resnet serve: not tuned ({exc}; or pass --no-tune)", file=sys.stderr, flush=True)
        return None
    cpus = len(topology)
    cands = serve_tune.candidates(cpus, cfg.workers, fixed_streams, args.threads)
    key = serve_tune.key(spec, plan, cfg.p99_ms, cfg.max_batch, cpus)
    scratch = tempfile.mkdtemp(prefix="ipex_resnet_tune_args_")

    def command(c: serve_tune.Candidate) -> list[str]:
        child = {
            **vars(args),
            "workers": c.workers,
            "streams": str(c.streams),
            "threads": c.threads,
            "max_wait_ms": c.max_wait_ms,
            "tune": False,
            "host": "127.0.0.1",
            "log_level": "warning",
            "access_log": False,
        }
        path = os.path.join(scratch, f"w{c.workers}s{c.streams}t{c.threads}m{c.max_wait_ms:g}.json")
        with open(path, "w") as f:
            json.dump(
                {k: v for k, v in child.items() if k != "port" and isinstance(v, (str, int, float, bool, type(None)))},
                f,
            )
        return [sys.executable, "-m", "ipex_resnet.cli.serve", path]

    def progress(line: str) -> None:
        print(f"ipex-resnet serve: {line}", file=sys.stderr, flush=True)

    try:
        return serve_tune.tune(key, command, cands, cfg.p99_ms, progress)
    finally:
        import shutil

        shutil.rmtree(scratch, ignore_errors=True)


def _child(path: str, port: str) -> int:
    """A tuning candidate: the parent's parsed options with the candidate's settings, on ``port``."""
    with open(path) as f:
        args = argparse.Namespace(**json.load(f), port=int(port))
    return main(args)


if __name__ == "__main__":  # python -m ipex_resnet.cli.serve OPTIONS.json --port N (a --tune candidate)
    if len(sys.argv) != 4 or sys.argv[2] != "--port":
        sys.exit("usage: python -m ipex_resnet.cli.serve OPTIONS.json --port N (used by --tune)")
    sys.exit(_child(sys.argv[1], sys.argv[3]))
