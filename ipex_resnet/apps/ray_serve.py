"""Serve the classifier on a Ray cluster with Ray Serve: ``ipex-resnet serve``'s own Starlette app (the
same routes -- ``/v1/classify``, the Open Inference Protocol's ``/v2/...``, ``/healthz``, ``/readyz``,
``/metrics`` -- the same handler, micro-batcher, latency target and result cache) as the ASGI ingress of
a Ray Serve deployment, one copy per replica.

    ipex-resnet serve --ray --replicas 2 --replica-cpus 1 --backend onnxruntime   # a local Ray instance
    ipex-resnet serve --ray HEAD:6379 --replicas 4 --replica-cpus 8                # an existing cluster
    ipex-resnet serve --ray-config --replicas 4 > serve.yaml && serve deploy serve.yaml

- A replica declares ``num_cpus = replica_cpus`` to Ray and runs that many engine threads. Ray does not
  give an actor particular cores, so replicas are not pinned (``ipex-resnet serve --workers`` is, on one
  machine).
- A replica is ready for traffic once its model is loaded and warmed up (its constructor waits); Ray's
  health check calls the service's (a failed load or stalled inference replaces the replica).
- The compiled artifact comes from the cache: the first replica on a node builds it, the others wait on
  the cache's lock file and load it. With a local Ray instance the command resolves the plan first
  (engine and precision measured once), so every replica serves the same engine.
- HTTP hardening of the connection itself (slow headers, lingering close) is Ray's HTTP proxy's; the
  body limits, admission (``max_queue``; also Ray's ``max_ongoing_requests``, per replica, and
  ``max_queued_requests``, per proxy: past them 503), deadlines and typed errors are the app's.

Thread safety: :func:`app_builder` and :class:`RayServeSpec` are plain values, safe anywhere; the
deployment's replicas are Ray actors, each with its own service.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass, field

from ipex_resnet.errors import ConfigError
from ipex_resnet.serve.config import ServeConfig

HINT = "Ray Serve is not installed: pip install 'ipex_resnet[ray]'  (ray[serve])"
APP_NAME = "ipex_resnet"
DEPLOYMENT = "IpexResnet"
PROXY_LOCATIONS = ("EveryNode", "HeadOnly")
# what a Ray Serve replica cannot use: the HTTP socket and process options belong to Ray's proxy
_NOT_FOR_RAY = (
    "host",
    "port",
    "workers",
    "tune",
    "tuned",
    "max_connections",
    "header_timeout_s",
    "linger_timeout_s",
    "keepalive_timeout_s",
    "drain_delay_s",
)


@dataclass(frozen=True)
class RayServeSpec:
    """Everything a replica needs, as JSON-able values (Ray's ``serve.yaml`` passes them as ``args``).

    ``model``: ``ipex_resnet.load`` keyword arguments, with ``model``; ``config``: ``ServeConfig`` fields;
    ``replicas`` (fixed), or ``min_replicas`` / ``max_replicas`` / ``target_ongoing_requests``
    (autoscaling); ``replica_cpus``: the CPUs each replica declares and the engine threads it runs.
    """

    model: dict
    config: dict = field(default_factory=dict)
    replicas: int = 1
    replica_cpus: int = 1
    min_replicas: int | None = None
    max_replicas: int | None = None
    target_ongoing_requests: float | None = None

    def __post_init__(self):
        if not isinstance(self.model, dict) or not self.model.get("model"):
            raise ConfigError("the Ray Serve app needs a model spec: {'model': 'resnet18', ...}")
        try:
            self.serve_config()
        except (TypeError, ValueError) as exc:
            raise ConfigError(str(exc)) from None
        for name in ("replicas", "replica_cpus"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(
                    f"--{name.replace('_', '-')} must be a whole number of at least 1, got {getattr(self, name)!r}"
                )
        lo, hi = self.min_replicas, self.max_replicas
        if (lo is None) != (hi is None):
            raise ConfigError("autoscaling needs both --min-replicas and --max-replicas")
        if lo is not None and not (isinstance(lo, int) and isinstance(hi, int) and 0 <= lo <= hi and hi >= 1):
            raise ConfigError(f"--min-replicas ({lo}) and --max-replicas ({hi}) must satisfy 0 <= min <= max, max >= 1")
        if self.target_ongoing_requests is not None:
            if lo is None:
                raise ConfigError(
                    "--target-ongoing-requests applies to autoscaling: give --min-replicas and --max-replicas too"
                )
            if not self.target_ongoing_requests > 0:
                raise ConfigError(f"--target-ongoing-requests must be above 0, got {self.target_ongoing_requests}")

    @classmethod
    def from_dict(cls, args: dict) -> RayServeSpec:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(args) - known)
        if unknown:
            raise ConfigError(
                f"unknown Ray Serve app argument(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})"
            )
        return cls(**args)

    def serve_config(self) -> ServeConfig:
        cfg = {k: v for k, v in self.config.items() if k not in _NOT_FOR_RAY}
        return ServeConfig(**cfg)

    @property
    def autoscaling(self) -> bool:
        return self.min_replicas is not None

    def replicas_needed(self) -> int:
        """Replicas that must fit in the cluster at once (the fixed count, or autoscaling's minimum)."""
        return self.min_replicas if self.min_replicas is not None else self.replicas

    def deployment_options(self) -> dict:
        """Ray Serve's ``.options(...)`` for the deployment."""
        cfg = self.serve_config()
        opts = {
            "ray_actor_options": {"num_cpus": self.replica_cpus},
            "max_ongoing_requests": cfg.max_queue,
            "max_queued_requests": cfg.max_queue,
            "graceful_shutdown_timeout_s": cfg.graceful_timeout_s,
            "health_check_period_s": 5.0,
            "health_check_timeout_s": max(30.0, cfg.stall_timeout_s),
        }
        if self.autoscaling:
            auto: dict[str, float | None] = {"min_replicas": self.min_replicas, "max_replicas": self.max_replicas}
            if self.target_ongoing_requests is not None:
                auto["target_ongoing_requests"] = self.target_ongoing_requests
            opts["autoscaling_config"] = auto
        else:
            opts["num_replicas"] = self.replicas
        return opts

    def to_dict(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


def replica_config(cfg: dict) -> dict:
    """The service options a replica uses, only where they differ from the defaults (a short ``serve.yaml``)."""
    defaults = {f.name: f.default for f in dataclasses.fields(ServeConfig)}
    return {k: v for k, v in cfg.items() if k not in _NOT_FOR_RAY and v != defaults.get(k)}


def _require_serve():
    from ipex_resnet.util.deps import require

    return require("ray.serve", HINT)


class Replica:
    """One replica: ``ipex-resnet serve``'s app around a classifier loaded with ``replica_cpus`` threads.
    Its constructor returns once the model is loaded, warmed up and its batch capped by the target."""

    async def __init__(self, spec: dict):  # type: ignore[misc]  # Ray Serve awaits an async constructor
        from ipex_resnet.serve.app import create_app
        from ipex_resnet.serve.process import make_loader, setup_logging

        s = RayServeSpec.from_dict(spec)
        cfg = s.serve_config()
        setup_logging(cfg.log_level)
        model = {**s.model, "threads": s.model.get("threads") or s.replica_cpus}
        self._app = create_app(make_loader(model, cfg.max_pixels), cfg)
        svc = self._app.state.service
        try:
            await asyncio.wrap_future(svc.life.start_loading())
        except Exception as exc:
            svc.life.report_load_error(exc)
            raise RuntimeError(f"could not load the model: {svc.load_error}") from None
        self._service = svc

    def __serve_build_asgi_app__(self):
        return self._app

    async def check_health(self) -> None:
        """Ray's health check: the service's own (a failed load, or inference that makes no progress)."""
        problem = self._service.health.liveness()
        if problem is not None:
            raise RuntimeError(problem.message)


def build(spec: RayServeSpec):
    """The Ray Serve application (``serve.run(build(spec), route_prefix="/")``)."""
    serve = _require_serve()
    deployment = serve.deployment(serve.ingress()(Replica), name=DEPLOYMENT)
    return deployment.options(**spec.deployment_options()).bind(spec.to_dict())


def app_builder(args: dict):
    """Ray Serve's application builder, for ``serve.yaml``::

    applications:
      - name: ipex_resnet
        route_prefix: /
        import_path: ipex_resnet.apps.ray_serve:app_builder
        args: {model: {model: resnet18, weights: DEFAULT}, replicas: 2, replica_cpus: 4}
    """
    return build(RayServeSpec.from_dict(dict(args)))


def config_yaml(spec: RayServeSpec, host: str, port: int, proxy_location: str = "EveryNode") -> str:
    """A ``serve deploy`` config running :func:`app_builder` with ``spec``."""
    import json

    doc = {
        "proxy_location": proxy_location,
        "http_options": {"host": host, "port": port},
        "applications": [
            {
                "name": APP_NAME,
                "route_prefix": "/",
                "import_path": "ipex_resnet.apps.ray_serve:app_builder",
                "args": spec.to_dict(),
            }
        ],
    }
    try:
        import yaml
    except ImportError:  # JSON is YAML
        return json.dumps(doc, indent=2) + "\n"
    return "# ipex-resnet on Ray Serve: serve deploy serve.yaml (docs/scale-out.md)\n" + yaml.safe_dump(
        doc, sort_keys=False, default_flow_style=False
    )


__all__ = [
    "APP_NAME",
    "DEPLOYMENT",
    "HINT",
    "PROXY_LOCATIONS",
    "RayServeSpec",
    "Replica",
    "app_builder",
    "build",
    "config_yaml",
    "replica_config",
]
