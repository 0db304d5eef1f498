"""The benchmark's options, declared once: ``ipex-resnet bench --X`` and pytest's ``--bench-X`` (bench/)
are both generated from :data:`OPTIONS`, and both are validated by :func:`settings` into one
:class:`Settings`."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ipex_resnet.errors import ConfigError

DEFAULT_BATCH_SIZES = (1, 8, 32)
QUICK_BATCH_SIZES = (1, 8)
# Gate thresholds, chosen from measured noise (docs/benchmarks.md, bench/gate_experiment.py): the package's
# gate (at least GATE_ROUNDS paired rounds in each of GATE_PROCESSES or more fresh processes, the median of
# their ratios against their noise floor) and bench/'s suites (the fastest of pytest-benchmark's rounds in
# one process).
TIME_TOLERANCE = 0.025
SUITE_TIME_TOLERANCE = 0.04
GATE_ROUNDS = 32
GATE_PROCESSES = 3
# seconds per path the gate may spend taking more processes while its noise floor leaves a check undecided
GATE_BUDGET_S = 180.0
MEMORY_TOLERANCE = 0.10
MEMORY_SLACK_MB = 24.0
# The Server scenarios' latency bound (MLPerf's ResNet-50 server bound is 15 ms; this is for a served path).
P99_MS = 100.0

CLI, PYTEST = "cli", "pytest"


@dataclass(frozen=True)
class Option:
    """One option. ``dest`` is the Settings field; the CLI flag is ``--dest-with-dashes`` and the pytest
    flag ``--bench-`` + the same (``scopes`` says where it exists)."""

    dest: str
    help: str
    default: Any = None
    type: Callable[[str], Any] | None = None
    flag: bool = False  # store_true
    scopes: tuple[str, ...] = (CLI, PYTEST)
    aliases: tuple[str, ...] = ()  # extra CLI spellings
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
        kw: dict[str, Any] = {
            "help": self.help,
            "default": self.default if default is None else default,
            "dest": self._dest(scope),
        }
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
    Option(
        "model",
        "a torchvision model name (random weights unless --weights) or your model as an import path "
        "pkg.module:attr (default: resnet18)",
        "resnet18",
    ),
    Option("weights", "none (default: random weights) | DEFAULT | an enum name | PATH to a state dict", "none"),
    Option(
        "preset",
        "preprocessing preset JSON {resize_size, crop_size, mean, std, interpolation} (default: the weights' own)",
        metavar="JSON",
    ),
    Option("resize", "preset: resize the short side to N", type=int, metavar="N"),
    Option("crop", "preset: center crop NxN", type=int, metavar="N"),
    Option("mean", "preset: per-channel mean (1 or 3 values)", metavar="R,G,B"),
    Option("std", "preset: per-channel std (1 or 3 values)", metavar="R,G,B"),
    Option("interpolation", "preset: bilinear | bicubic | ..."),
    Option(
        "labels",
        "labelled images (a folder with labels.csv, or one sub-folder per class): top-1/top-5 of "
        "every path beside its speed, and its drop vs eager fp32 in points",
        metavar="DIR",
    ),
    Option("threads", "intra-op threads for every path, peers included (default: the plan's)", type=int),
    Option(
        "batch_sizes",
        "comma-separated batch sizes; 1 (latency) is always included (default: 1,8,32; --quick: 1,8)",
        aliases=("--batch-size",),
    ),
    Option(
        "backends",
        "comma-separated engines (ipex,inductor,openvino,onnxruntime,eager; default: all that run "
        "here); eager/fp32, the reference, is always measured",
    ),
    Option(
        "precisions",
        "comma-separated fp32,bf16,int8 (default: fp32, bf16 where native, int8 where the "
        "engine's int8 path is installed)",
    ),
    Option(
        "peers", "comma-separated peer engines used directly (onnxruntime,openvino), or 'none' (default: all installed)"
    ),
    Option("emulated_bf16", "also run bf16 where it would be emulated", flag=True),
    Option(
        "images",
        "directory of JPEGs for end to end and int8 calibration (default: synthetic JPEGs; "
        "bench/: the shared real photos)",
        metavar="DIR",
    ),
    Option(
        "quick",
        "short run: batch sizes 1,8, small timing budgets (pytest: CI-sized, optimized engines "
        "at the plan's precision only)",
        flag=True,
    ),
    Option(
        "budget",
        "seconds of interleaved timing per batch size, shared by all paths (default: 15; --quick: 4)",
        type=float,
        scopes=(CLI,),
    ),
    Option(
        "alone_budget",
        "seconds of timing per path alone in a fresh process (default: 6; --quick: 2; 0: skip the alone columns)",
        type=float,
        scopes=(CLI,),
    ),
    Option(
        "no_cold_start",
        "skip the cold-start measurement (classify in a fresh process per engine)",
        flag=True,
        scopes=(CLI,),
    ),
    Option("output", "report path (default: bench-report-<machine key>.json)", scopes=(CLI,), aliases=("-o",)),
    Option("no_progress", "no progress display on stderr", flag=True, scopes=(CLI,)),
    Option(
        "enforce_targets",
        "exit non-zero (CLI: 3; pytest: a failed test) when a speed, cold-start or memory target is not met",
        flag=True,
    ),
    Option("rounds", "rounds for batch-1 latency (default: 40; quick: 16)", type=int, scopes=(PYTEST,)),
    Option(
        "gate",
        "judge this run against a saved baseline of this machine key (and, CLI: this model spec): "
        "BASELINE is its name (pytest: the end of its file name; no value: the newest); exit 1 (pytest: a "
        "failed session) on a regression, 2 when the baseline is missing or from another machine key",
        nargs="?",
        const="latest",
        metavar="BASELINE",
    ),
    Option(
        "save_baseline",
        "save this run as baseline NAME for this machine key and model spec (after --gate, only when it passes)",
        scopes=(CLI,),
        metavar="NAME",
    ),
    Option(
        "baseline_dir",
        "where baselines live (default: <artifact cache root>/baselines, i.e. "
        "$IPEX_RESNET_CACHE_DIR/baselines or ~/.cache/ipex_resnet/artifacts/baselines)",
        scopes=(CLI,),
        metavar="DIR",
    ),
    Option(
        "summary_md",
        "append the gate's verdicts as a Markdown table to FILE (a PR comment, $GITHUB_STEP_SUMMARY); needs --gate",
        scopes=(CLI,),
        metavar="FILE",
    ),
    Option(
        "price_per_hour",
        "this machine's price in USD per hour, recorded in the report (compare: cost per million images)",
        type=float,
        scopes=(CLI,),
        metavar="USD",
    ),
    Option(
        "scenarios",
        "MLPerf-style scenarios driven by MLCommons' LoadGen, comma-separated: single-stream, "
        "offline, server (in process: on preprocessed images and decoding the JPEGs), service (Server against the "
        "HTTP service: the served capacity), peer (Server against LitServe serving the same engine), ray-serve "
        "(against Ray Serve with its own @serve.batch, the same engine), ray-service (our service on Ray Serve: "
        "ipex-resnet serve --ray; 'all' includes both Ray ones where Ray Serve is installed), all, none "
        "(default: none)",
        scopes=(CLI,),
        metavar="LIST",
    ),
    Option(
        "ray_replicas",
        "replicas of the ray-service scenario (our service on Ray Serve; default 1), the "
        "path's threads split among them",
        1,
        type=int,
        scopes=(CLI,),
        metavar="N",
    ),
    Option(
        "scenario_path",
        "ENGINE/PRECISION the scenarios run on (default: our path with the most img/s at the largest batch)",
        scopes=(CLI,),
        metavar="PATH",
    ),
    Option(
        "p99_ms",
        f"the Server scenarios' p99 latency bound in ms (default {P99_MS:g})",
        P99_MS,
        type=float,
        scopes=(CLI,),
        metavar="MS",
    ),
    Option(
        "scenario_budget", "seconds per LoadGen run (default 10; --quick 3)", type=float, scopes=(CLI,), metavar="S"
    ),
    Option(
        "time_tolerance",
        f"allowed growth of a ratio to the eager reference (default {TIME_TOLERANCE}; "
        f"bench/ suites: {SUITE_TIME_TOLERANCE})",
        TIME_TOLERANCE,
        type=float,
        metavar="FRACTION",
    ),
    Option(
        "gate_rounds",
        f"--gate/--save-baseline: paired rounds (reference call, path call) per path and batch "
        f"size in each gate process (default {GATE_ROUNDS})",
        GATE_ROUNDS,
        type=int,
        scopes=(CLI,),
        metavar="N",
    ),
    Option(
        "gate_processes",
        f"--gate/--save-baseline: fresh single-threaded processes whose fastest calls the gate "
        f"pools (default {GATE_PROCESSES})",
        GATE_PROCESSES,
        type=int,
        scopes=(CLI,),
        metavar="N",
    ),
    Option(
        "gate_budget",
        f"--gate/--save-baseline: seconds per path the gate may spend in all, taking more processes "
        f"(up to 24) while the measured noise leaves a check undecided (default {GATE_BUDGET_S:g}; 0: never more "
        "than --gate-processes)",
        GATE_BUDGET_S,
        type=float,
        scopes=(CLI,),
        metavar="S",
    ),
    Option(
        "memory_tolerance",
        f"allowed relative growth of peak RSS (default {MEMORY_TOLERANCE}, plus {MEMORY_SLACK_MB:g} MB)",
        MEMORY_TOLERANCE,
        type=float,
        metavar="FRACTION",
    ),
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
    weights: str = "none"
    preset: dict | None = None  # the preset as data (PresetSpec.to_dict()); None: the weights' own
    labels: str | None = None  # labelled images: accuracy columns
    threads: int | None = None
    batch_sizes: list[int] = field(default_factory=lambda: list(DEFAULT_BATCH_SIZES))
    backends: list[str] | None = None  # None: every engine that runs here
    precisions: list[str] | None = None  # None: fp32, bf16 where native, int8 where installed
    peers: list[str] | None = None  # None: every registered peer; []: none
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
    save_baseline: str | None = None
    baseline_dir: str | None = None  # None: <artifact cache root>/baselines
    summary_md: str | None = None
    price_per_hour: float | None = None  # USD per hour of this machine
    scenarios: list[str] = field(default_factory=list)  # MLPerf-style scenarios to run (none by default)
    ray_replicas: int = 1  # replicas of the ray-service scenario
    scenario_path: str | None = None  # None: our path with the most img/s at the largest batch
    p99_ms: float = P99_MS
    scenario_budget: float = 10.0  # seconds per LoadGen run
    time_tolerance: float = TIME_TOLERANCE
    memory_tolerance: float = MEMORY_TOLERANCE
    gate_rounds: int = GATE_ROUNDS
    gate_processes: int = GATE_PROCESSES
    gate_budget: float = GATE_BUDGET_S


def settings(raw: Mapping[str, Any]) -> Settings:
    """Validate raw option values (from either front end) into :class:`Settings`."""
    from ipex_resnet import engines
    from ipex_resnet.benchmarking import peers as peer_registry
    from ipex_resnet.models.resolve import _check_name
    from ipex_resnet.models.spec import is_import_path, preset_from_options

    quick = bool(raw.get("quick"))
    s = Settings(quick=quick)
    model = raw.get("model") or "resnet18"
    s.model = model if is_import_path(model) else _check_name(model)
    s.weights = raw.get("weights") or "none"
    spec = preset_from_options(
        raw.get("preset"), raw.get("resize"), raw.get("crop"), raw.get("mean"), raw.get("std"), raw.get("interpolation")
    )
    s.preset = spec.to_dict() if spec else None
    from ipex_resnet.benchmarking.inputs import resolved

    model = resolved(s.model, s.weights, s.preset)  # a bad model, checkpoint or preset fails here, in one line
    s.labels = raw.get("labels") or None
    if s.labels:
        from ipex_resnet.core.evaluate import read_labels

        read_labels(s.labels, model.categories)  # bad labels fail before anything is measured
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
        from ipex_resnet.benchmarking.inputs import image_files

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
    _gate_settings(s, raw)
    _scenario_settings(s, raw)
    return s


def _scenario_settings(s: Settings, raw: Mapping[str, Any]) -> None:
    """The LoadGen scenarios' options; with scenarios asked for, their packages must be installed."""
    from ipex_resnet.benchmarking.scenarios import parse_scenarios
    from ipex_resnet.util.deps import first_missing

    s.scenarios = parse_scenarios(raw.get("scenarios"))
    s.scenario_path = (raw.get("scenario_path") or "").strip().lower() or None
    p99 = raw.get("p99_ms")
    p99 = P99_MS if p99 is None else float(p99)
    if not (p99 > 0 and math.isfinite(p99)):
        raise ConfigError(f"--p99-ms must be a positive number of milliseconds, got {p99:g}")
    s.p99_ms = p99
    budget = raw.get("scenario_budget")
    budget = (3.0 if s.quick else 10.0) if budget is None else float(budget)
    if not (budget > 0 and math.isfinite(budget)):
        raise ConfigError(f"--scenario-budget must be a positive number of seconds, got {budget:g}")
    s.scenario_budget = budget
    replicas = raw.get("ray_replicas")
    replicas = 1 if replicas is None else replicas
    if not (isinstance(replicas, int) and 1 <= replicas <= 64):
        raise ConfigError(f"--ray-replicas must be a whole number from 1 to 64, got {replicas!r}")
    s.ray_replicas = replicas
    needs = {"mlperf_loadgen": "mlcommons-loadgen"}
    ray = {"ray-serve", "ray-service"} & set(s.scenarios)
    if {"service", "peer"} & set(s.scenarios) or ray:
        needs["httpx"] = "httpx"
    if "peer" in s.scenarios:
        needs["litserve"] = "litserve"
    if ray and first_missing("ray.serve", "grpc", "fastapi"):  # Ray without its serve extra
        if "all" not in str(raw.get("scenarios") or "").lower():
            raise ConfigError(f"--scenarios {','.join(s.scenarios)} needs Ray Serve: pip install 'ray[serve]'")
        s.scenarios = [n for n in s.scenarios if n not in ray]  # 'all': what this install can run
    missing = first_missing(*needs) if s.scenarios else None
    if missing:
        raise ConfigError(
            f"--scenarios {','.join(s.scenarios)} needs {needs[missing]}: pip install {needs[missing]} "
            "(or pip install 'ipex_resnet[loadgen]')"
        )


def _gate_settings(s: Settings, raw: Mapping[str, Any]) -> None:
    """The baseline, gate and price options (checked before anything is measured)."""
    from ipex_resnet.benchmarking.baseline import check_name

    s.save_baseline = check_name(raw.get("save_baseline"), "--save-baseline")
    s.baseline_dir = raw.get("baseline_dir") or None
    s.summary_md = raw.get("summary_md") or None
    if s.summary_md and not s.gate:
        raise ConfigError("--summary-md needs --gate NAME (the table is the gate's verdicts)")
    price = raw.get("price_per_hour")
    if price is not None and not (price > 0 and math.isfinite(price)):
        raise ConfigError(f"--price-per-hour must be a positive number of USD per hour, got {price:g}")
    s.price_per_hour = float(price) if price is not None else None
    for key in ("time_tolerance", "memory_tolerance"):
        value = raw.get(key)
        value = float(value) if value is not None else (TIME_TOLERANCE if key == "time_tolerance" else MEMORY_TOLERANCE)
        if not value >= 0:
            raise ConfigError(f"--{key.replace('_', '-')} must be 0 or more, got {value:g}")
        setattr(s, key, value)
    for key, default, low in (("gate_rounds", GATE_ROUNDS, 4), ("gate_processes", GATE_PROCESSES, 1)):
        value = raw.get(key)
        value = default if value is None else value
        if not (isinstance(value, int) and low <= value <= 1000):
            raise ConfigError(f"--{key.replace('_', '-')} must be a whole number from {low} to 1000, got {value!r}")
        setattr(s, key, value)
    budget = raw.get("gate_budget")
    budget = GATE_BUDGET_S if budget is None else budget
    if not (isinstance(budget, (int, float)) and 0 <= budget <= 86400):
        raise ConfigError(f"--gate-budget must be a number of seconds from 0 to 86400, got {budget!r}")
    s.gate_budget = float(budget)


__all__ = [
    "OPTIONS",
    "Option",
    "Settings",
    "add_cli_arguments",
    "add_pytest_options",
    "parse_batch_sizes",
    "parse_list",
    "raw_from_cli",
    "raw_from_pytest",
    "settings",
]
