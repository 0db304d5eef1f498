"""``ipex-resnet serve --ray [ADDRESS]`` and ``--ray-config``: the service on a Ray cluster with Ray Serve
(:mod:`ipex_resnet.apps.ray_serve`). Bad options fail before Ray starts, with one line."""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
import threading

from ipex_resnet.apps.ray_serve import APP_NAME, HINT, PROXY_LOCATIONS, RayServeSpec, build, config_yaml, replica_config
from ipex_resnet.errors import ConfigError, first_line


def add_arguments(g: argparse._ArgumentGroup) -> None:
    g.add_argument(
        "--ray",
        nargs="?",
        const="local",
        default=None,
        metavar="ADDRESS",
        help="serve on Ray Serve: a local Ray instance (no ADDRESS), or the cluster at ADDRESS "
        "(auto, HOST:6379 or ray://HOST:10001); docs/scale-out.md",
    )
    g.add_argument(
        "--ray-config",
        action="store_true",
        help="print a Ray Serve config for `serve deploy` (with these options) and exit",
    )
    g.add_argument("--replicas", type=int, default=1, help="Ray Serve replicas (default: 1)")
    g.add_argument(
        "--replica-cpus",
        type=int,
        default=None,
        metavar="N",
        help="CPUs each replica declares to Ray and engine threads it runs (default: --threads, else 1)",
    )
    g.add_argument("--min-replicas", type=int, default=None, help="autoscaling: fewest replicas")
    g.add_argument("--max-replicas", type=int, default=None, help="autoscaling: most replicas")
    g.add_argument(
        "--target-ongoing-requests",
        type=float,
        default=None,
        help="autoscaling: requests in flight per replica it aims for (Ray's default: 2)",
    )
    g.add_argument(
        "--ray-proxy",
        choices=PROXY_LOCATIONS,
        default="EveryNode",
        help="where Ray runs its HTTP proxy: on every node (default) or the head only",
    )


RAY_ONLY = {
    "replicas": 1,
    "replica_cpus": None,
    "min_replicas": None,
    "max_replicas": None,
    "target_ongoing_requests": None,
    "ray_proxy": "EveryNode",
}


def wanted(args: argparse.Namespace) -> bool:
    """``--ray`` or ``--ray-config``; a Ray Serve option without either is an error (ConfigError)."""
    if getattr(args, "ray", None) is not None or getattr(args, "ray_config", False):
        return True
    given = [f"--{k.replace('_', '-')}" for k, default in RAY_ONLY.items() if getattr(args, k, default) != default]
    if given:
        raise ConfigError(f"{', '.join(given)} applies to Ray Serve: add --ray [ADDRESS] or --ray-config")
    return False


def spec_from(args: argparse.Namespace, cfg_dict: dict, model: dict) -> RayServeSpec:
    """The replicas' spec from the command's options (JSON-able: the preset as its fields)."""
    model = {k: v for k, v in model.items() if v is not None}
    if hasattr(model.get("transforms"), "to_dict"):  # a PresetSpec: its JSON form
        model["transforms"] = model["transforms"].to_dict()
    cpus = args.replica_cpus or args.threads or 1
    model["threads"] = cpus  # the engine threads a replica runs are the CPUs it declares
    return RayServeSpec(
        model=model,
        config=replica_config(cfg_dict),
        replicas=args.replicas,
        replica_cpus=cpus,
        min_replicas=args.min_replicas,
        max_replicas=args.max_replicas,
        target_ongoing_requests=args.target_ongoing_requests,
    )


def main(args: argparse.Namespace, cfg, model: dict) -> int:
    try:
        spec = spec_from(args, dataclasses.asdict(cfg), model)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.ray_config:
        sys.stdout.write(config_yaml(spec, cfg.host, cfg.port, args.ray_proxy))
        return 0
    try:
        from ipex_resnet.util.deps import require

        ray = require("ray", HINT)
        serve = require("ray.serve", HINT)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    local = args.ray == "local"
    if local:
        resolved = _resolved(spec)
        if resolved is None:
            return 2
        spec = resolved
    problem = None if local else _unreachable(args.ray)
    if problem:
        print(f"error: cannot join Ray at {args.ray}: {problem}", file=sys.stderr)
        return 2
    try:
        ray.init(
            address=None if local else args.ray, include_dashboard=False, log_to_driver=False, configure_logging=False
        )
    except Exception as exc:
        print(
            f"error: cannot start or join Ray at {'a local instance' if local else args.ray}: {first_line(exc)}",
            file=sys.stderr,
        )
        return 2
    return _serve_on_ray(ray, serve, spec, cfg, args, local)


def _serve_on_ray(ray, serve, spec: RayServeSpec, cfg, args: argparse.Namespace, local: bool) -> int:
    """Deploy on the Ray that is up, serve until SIGTERM/SIGINT, then take down what this command started."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):  # after ray.init, which installs handlers of its own
        signal.signal(sig, lambda *_: stop.set())
    deployed = False
    try:
        have = ray.cluster_resources().get("CPU", 0)
        need = spec.replicas_needed() * spec.replica_cpus
        if need > have:
            print(
                f"error: {spec.replicas_needed()} replica(s) x {spec.replica_cpus} CPU(s) need {need} CPUs; the "
                f"Ray cluster has {have:g} (fewer --replicas or --replica-cpus, or more nodes)",
                file=sys.stderr,
            )
            return 2
        print(
            f"ipex-resnet serve: deploying on Ray Serve ({'local Ray' if local else args.ray}, {have:g} CPUs): "
            f"{_describe(spec)}",
            file=sys.stderr,
            flush=True,
        )
        try:
            serve.start(http_options={"host": cfg.host, "port": cfg.port}, proxy_location=args.ray_proxy)
            deployed = True
            serve.run(build(spec), name=APP_NAME, route_prefix="/", blocking=False)
        except Exception as exc:
            print(f"error: the Ray Serve app did not start: {first_line(exc)}", file=sys.stderr)
            return 2
        print(f"ready: Ray Serve on http://{cfg.host}:{cfg.port} ({_describe(spec)})", file=sys.stderr, flush=True)
        stop.wait()
        print("ipex-resnet serve: stopping the Ray Serve app", file=sys.stderr, flush=True)
        return 0
    finally:
        if local:
            serve.shutdown()  # our own Ray instance: Serve and Ray go with the command
        elif deployed:
            serve.delete(APP_NAME)  # a shared cluster: only our app; its other apps and Serve stay
        ray.shutdown()


def _unreachable(address: str, timeout_s: float = 5.0) -> str | None:
    """Why the GCS at ``HOST:PORT`` cannot be reached (Ray itself retries for minutes), or None (or for
    ``auto`` and ``ray://`` addresses, which Ray resolves)."""
    import socket

    host, sep, port = address.rpartition(":")
    if address == "auto" or "://" in address or not sep or not port.isdigit():
        return None
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        return f"{exc.strerror or exc} (is `ray start --head` running there?)"
    return None


def _describe(spec: RayServeSpec) -> str:
    m = spec.model
    scale = (
        f"autoscaling {spec.min_replicas}-{spec.max_replicas} replicas"
        if spec.autoscaling
        else f"{spec.replicas} replica(s)"
    )
    return f"{m['model']} {m.get('backend', 'auto')}/{m.get('precision', 'auto')}, {scale} x {spec.replica_cpus} CPU(s)"


def _resolved(spec: RayServeSpec) -> RayServeSpec | None:
    """With a local Ray instance: load once here, so the artifact is compiled (and ``auto`` measured) once
    and every replica serves the same engine and precision; None after printing why it failed."""
    from ipex_resnet.errors import IpexResnetError
    from ipex_resnet.serve.process import make_loader

    print(
        f"ipex-resnet serve: preparing {spec.model['model']} for the replicas ({spec.replica_cpus} thread(s) each)",
        file=sys.stderr,
        flush=True,
    )
    try:
        plan = make_loader(
            {**spec.model, "threads": spec.model.get("threads") or spec.replica_cpus}, spec.serve_config().max_pixels
        )().plan
    except IpexResnetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None
    return dataclasses.replace(spec, model={**spec.model, "backend": plan.backend, "precision": plan.precision})


__all__ = ["add_arguments", "main", "spec_from", "wanted"]
