"""The benchmark's options, declared once: ``ipex-resnet bench --X`` and pytest's ``--bench-X`` (bench/)
are both generated from :data:`OPTIONS`, and both are validated by :func:`settings` into one
:class:`Settings`."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError

DEFAULT_BATCH_SIZES = (1, 8, 32)
QUICK_BATCH_SIZES = (1, 8)
# Gate thresholds, chosen from measured noise (docs/benchmarks.md, bench/gate_experiment.py).
TIME_TOLERANCE = 0.04
MEMORY_TOLERANCE = 0.10
MEMORY_SLACK_MB = 24.0

CLI, PYTEST = "cli", "pytest"


@dataclass(frozen=True)
class Option:
    """One option. ``dest`` is the Settings field; the CLI flag is ``--dest-with-dashes`` and the pytest
    flag ``--bench-`` + the same (``scopes`` says where it exists)."""

    dest: str
    help: str
    default: Any = None
    type: Callable[[str], Any] | None = None
    flag: bool = False                      # store_true
    scopes: tuple[str, ...] = (CLI, PYTEST)
    aliases: tuple[str, ...] = ()           # extra CLI spellings
    metavar: str | None = None
    nargs: str | None = None
    const: Any = None

    @property
    def cli_flag(self) -> str:
        return "--" + self.dest.replace("_", "-")

    @property
    def pytest_flag(self) -> str:
        return "--bench-" + self.dest.replace("_", "-")

    def kwargs(self, scope: str, default: Any = None) -> dict:
        kw: dict[str, Any] = {"help": self.help, "default": self.default if default is None else default,
                              "dest": self._dest(scope)}
        if self.flag:
            kw["action"] = "store_true"
        else:
            for k in ("type", "metavar", "nargs", "const"):
                if getattr(self, k) is not None:
                    kw[k] = getattr(self, k)
        return kw

    def _dest(self, scope: str) -> str:
        return self.dest if scope == CLI else "bench_" + self.dest


OPTIONS: tuple[Option, ...] = (
    Option("model", "torchvision model name, random weights (default: resnet18)", "resnet18"),
    Option("threads", "intra-op threads for every path, peers included (default: the plan's)", type=int),
    Option("batch_sizes", "comma-separated batch sizes; 1 (latency) is always included "
           "(default: 1,8,32; --quick: 1,8)", aliases=("--batch-size",)),
    Option("backends", "comma-separated engines (ipex,inductor,openvino,onnxruntime,eager; default: all that run "
           "here); eager/fp32, the reference, is always measured"),
    Option("precisions", "comma-separated fp32,bf16,int8 (default: fp32, bf16 where native, int8 where the "
           "engine's int8 path is installed)"),
    Option("peers", "comma-separated peer engines used directly (onnxruntime,openvino), or 'none' "
           "(default: all installed)"),
    Option("emulated_bf16", "also run bf16 where it would be emulated", flag=True),
    Option("images", "directory of JPEGs for end to end and int8 calibration (default: synthetic JPEGs; "
           "bench/: the shared real photos)", metavar="DIR"),
    Option("quick", "short run: batch sizes 1,8, small timing budgets (pytest: CI-sized, optimized engines "
           "at the plan's precision only)", flag=True),
    Option("budget", "seconds of interleaved timing per batch size, shared by all paths (default: 15; "
           "--quick: 4)", type=float, scopes=(CLI,)),
    Option("alone_budget", "seconds of timing per path alone in a fresh process (default: 6; --quick: 2; "
           "0: skip the alone columns)", type=float, scopes=(CLI,)),
    Option("no_cold_start", "skip the cold-start measurement (classify in a fresh process per engine)",
           flag=True, scopes=(CLI,)),
    Option("output", "report path (default: bench-report-<machine key>.json)", scopes=(CLI,), aliases=("-o",)),
    Option("no_progress", "no progress display on stderr", flag=True, scopes=(CLI,)),
    Option("enforce_targets", "exit non-zero (CLI: 3; pytest: a failed test) when a speed, cold-start or memory "
           "target is not met", flag=True),
    Option("rounds", "rounds for batch-1 latency (default: 40; quick: 16)", type=int, scopes=(PYTEST,)),
    Option("gate", "judge this run against a saved baseline (the newest, or the one whose file name ends "
           "with BASELINE) in this machine key's storage; exit non-zero on regression",
           scopes=(PYTEST,), nargs="?", const="latest", metavar="BASELINE"),
    Option("time_tolerance", f"allowed growth of a ratio to the eager reference (default {TIME_TOLERANCE})",
           TIME_TOLERANCE, type=float, scopes=(PYTEST,)),
    Option("memory_tolerance", f"allowed relative growth of peak RSS (default {MEMORY_TOLERANCE}, plus "
           f"{MEMORY_SLACK_MB:g} MB)", MEMORY_TOLERANCE, type=float, scopes=(PYTEST,)),
)


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    for o in OPTIONS:
        if CLI in o.scopes:
            parser.add_argument(o.cli_flag, *o.aliases, **o.kwargs(CLI))


def add_pytest_options(group, **defaults: Any) -> None:
    """``defaults``: a different default for some options in the suites (e.g. ``images``)."""
    unknown = set(defaults) - {o.dest for o in OPTIONS}
    if unknown:
        raise ValueError(f"no such bench option: {', '.join(sorted(unknown))}")
    for o in OPTIONS:
        if PYTEST in o.scopes:
            group.addoption(o.pytest_flag, **o.kwargs(PYTEST, defaults.get(o.dest)))


def raw_from_cli(args: argparse.Namespace) -> dict:
    return {o.dest: getattr(args, o.dest) for o in OPTIONS if CLI in o.scopes}


def raw_from_pytest(config) -> dict:
    return {o.dest: config.getoption(o.pytest_flag) for o in OPTIONS if PYTEST in o.scopes}


# ----------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------

def parse_list(value: str | Sequence[str] | None, allowed: Sequence[str], what: str) -> list[str] | None:
    """Comma-separated (or list) option -> validated list (None stays None: "all"); raises
    ConfigError naming the bad item."""
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    out: list[str] = []
    for item in (str(i).strip().lower() for i in items):
        if not item:
            continue
        if item not in allowed:
            raise ConfigError(f"unknown {what} {item!r}: choose from {', '.join(allowed)}")
        if item not in out:
            out.append(item)
    if not out:
        raise ConfigError(f"no {what} given")
    return out


def parse_batch_sizes(value: str | Sequence[int] | None, default: Sequence[int] = DEFAULT_BATCH_SIZES) -> list[int]:
    if value is None:
        return list(default)
    items = value.split(",") if isinstance(value, str) else list(value)
    out: list[int] = []
    for item in items:
        try:
            n = int(str(item).strip())
        except ValueError:
            raise ConfigError(f"batch size {item!r} is not a whole number") from None
        if n < 1:
            raise ConfigError(f"batch size must be at least 1, got {n}")
        if n not in out:
            out.append(n)
    if 1 not in out:
        out.insert(0, 1)  # batch-1 latency is what every report and the gate are keyed on
    return sorted(out)


@dataclass
class Settings:
    model: str = "resnet18"
    threads: int | None = None
    batch_sizes: list[int] = field(default_factory=lambda: list(DEFAULT_BATCH_SIZES))
    backends: list[str] | None = None      # None: every engine that runs here
    precisions: list[str] | None = None    # None: fp32, bf16 where native, int8 where installed
    peers: list[str] | None = None         # None: every registered peer; []: none
    emulated_bf16: bool = False
    images: str | None = None
    quick: bool = False
    budget: float = 15.0
    alone_budget: float = 6.0
    cold_start: bool = True
    output: str | None = None
    progress: bool = True
    enforce_targets: bool = False
    rounds: int = 40
    gate: str | None = None
    time_tolerance: float = TIME_TOLERANCE
    memory_tolerance: float = MEMORY_TOLERANCE


def settings(raw: Mapping[str, Any]) -> Settings:
    """Validate raw option values (from either front end) into :class:`Settings`."""
    from .. import engines
    from ..models import _check_name
    from . import peers as peer_registry

    quick = bool(raw.get("quick"))
    s = Settings(quick=quick)
    s.model = _check_name(raw.get("model") or "resnet18")
    s.threads = raw.get("threads")
    if s.threads is not None and s.threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {s.threads}")
    s.batch_sizes = parse_batch_sizes(raw.get("batch_sizes"), QUICK_BATCH_SIZES if quick else DEFAULT_BATCH_SIZES)
    s.backends = parse_list(raw.get("backends"), engines.names(), "backend")
    s.precisions = parse_list(raw.get("precisions"), engines.PRECISIONS, "precision")
    peer_arg = str(raw.get("peers") or "").strip().lower()
    s.peers = [] if peer_arg == "none" else parse_list(raw.get("peers"), peer_registry.engines_with_peers(), "peer")
    s.emulated_bf16 = bool(raw.get("emulated_bf16"))
    s.images = raw.get("images") or None
    if s.images is not None:
        from .inputs import image_files

        image_files(s.images)  # fails early, naming the directory
    for key, full, short in (("budget", 15.0, 4.0), ("alone_budget", 6.0, 2.0)):
        v = raw.get(key)
        if v is not None and v < 0 or key == "budget" and v == 0:
            raise ConfigError(f"--{key.replace('_', '-')} must be positive, got {v}")
        setattr(s, key, float(v) if v is not None else (short if quick else full))
    s.cold_start = not raw.get("no_cold_start")
    s.output = raw.get("output")
    if s.output:
        from pathlib import Path

        out_dir = Path(s.output).resolve().parent
        if not out_dir.is_dir():
            raise ConfigError(f"--output directory {str(out_dir)!r} does not exist")
    s.progress = not raw.get("no_progress")
    s.enforce_targets = bool(raw.get("enforce_targets"))
    rounds = raw.get("rounds")
    if rounds is not None and rounds < 2:
        raise ConfigError(f"--bench-rounds must be at least 2, got {rounds}")
    s.rounds = rounds or (16 if quick else 40)
    s.gate = raw.get("gate")
    s.time_tolerance = float(raw.get("time_tolerance", TIME_TOLERANCE))
    s.memory_tolerance = float(raw.get("memory_tolerance", MEMORY_TOLERANCE))
    return s


__all__ = ["OPTIONS", "Option", "Settings", "add_cli_arguments", "add_pytest_options", "parse_batch_sizes",
           "parse_list", "raw_from_cli", "raw_from_pytest", "settings"]
