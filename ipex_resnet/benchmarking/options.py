"""The benchmark's options, declared once: ``ipex-resnet bench --X`` and pytest's ``--bench-X`` (bench/)
are both generated from :data:`OPTIONS` (each option's help, default, ``--quick`` default and limits in
one :class:`~ipex_resnet.util.params.Param`, as ``ipex-resnet serve``'s are), and both are validated by
:func:`settings` into one :class:`Settings` (the model as one :class:`~ipex_resnet.models.spec.ModelSpec`)."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ipex_resnet.errors import ConfigError
from ipex_resnet.models.spec import ModelSpec, is_import_path
from ipex_resnet.util.params import Param, shown

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
    """One option: ``param`` declares its help, default, type and limits (checked by :func:`settings`),
    ``quick`` its default under ``--quick``. ``dest`` is the Settings field (or the raw key); the CLI flag
    is ``--dest-with-dashes`` and the pytest flag ``--bench-`` + the same (``scopes`` says where it exists)."""

    dest: str
    param: Param
    quick: Any = None  # the default with --quick (None: the same as without)
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

    @property
    def named(self) -> str:
        """The flag an error names: the CLI's where it has one."""
        return self.cli_flag if CLI in self.scopes else self.pytest_flag

    def value(self, raw: Mapping[str, Any], quick: bool) -> Any:
        """The raw value, else the default (``--quick``'s where it has one), checked against the limits."""
        given = raw.get(self.dest)
        if given is None:
            given = self.quick if quick and self.quick is not None else self.param.default
        return self.param.check(self.named, given)

    def kwargs(self, scope: str, default: Any = None) -> dict[str, Any]:
        """argparse's (and pytest's addoption) keywords; ``default``: another than the declared one."""
        if self.flag:
            return {"help": self.param.help, "default": False, "dest": self._dest(scope), "action": "store_true"}
        given = self.param.default if default is None else default
        quick = "" if self.quick is None else f"; {'--quick' if scope == CLI else '--bench-quick'}: {shown(self.quick)}"
        kw: dict[str, Any] = {
            "help": self.param.help_text(given, quick),
            "default": None if self.quick is not None and default is None else given,  # None: by --quick
            "dest": self._dest(scope),
        }
        for k, v in (
            ("type", self.param.type),
            ("metavar", self.metavar),
            ("nargs", self.nargs),
            ("const", self.const),
        ):
            if v is not None:
                kw[k] = v
        return kw

    def _dest(self, scope: str) -> str:
        return self.dest if scope == CLI else "bench_" + self.dest


OPTIONS: tuple[Option, ...] = (
    Option(
        "model",
        Param(
            "a torchvision model name (random weights unless --weights) or your model as an import path pkg.module:attr",
            "resnet18",
        ),
    ),
    Option("weights", Param("none: random weights | DEFAULT | an enum name | PATH to a state dict", "none")),
    Option(
        "preset",
        Param(
            "preprocessing preset JSON {resize_size, crop_size, mean, std, interpolation} (default: the weights' own)"
        ),
        metavar="JSON",
    ),
    Option("resize", Param("preset: resize the short side to N", type=int, minimum=1), metavar="N"),
    Option("crop", Param("preset: center crop NxN", type=int, minimum=1), metavar="N"),
    Option("mean", Param("preset: per-channel mean (1 or 3 values)"), metavar="R,G,B"),
    Option("std", Param("preset: per-channel std (1 or 3 values)"), metavar="R,G,B"),
    Option("interpolation", Param("preset: bilinear | bicubic | ...")),
    Option(
        "labels",
        Param(
            "labelled images (a folder with labels.csv, or one sub-folder per class): top-1/top-5 of "
            "every path beside its speed, and its drop vs eager fp32 in points"
        ),
        metavar="DIR",
    ),
    Option(
        "threads", Param("intra-op threads for every path, peers included (default: the plan's)", type=int, minimum=1)
    ),
    Option(
        "batch_sizes",
        Param(
            "comma-separated batch sizes; 1 (latency) is always included (default: "
            f"{','.join(map(str, DEFAULT_BATCH_SIZES))}; --quick: {','.join(map(str, QUICK_BATCH_SIZES))})"
        ),
        aliases=("--batch-size",),
    ),
    Option(
        "backends",
        Param(
            "comma-separated engines (ipex,inductor,openvino,onnxruntime,eager; default: all that run "
            "here); eager/fp32, the reference, is always measured"
        ),
    ),
    Option(
        "precisions",
        Param(
            "comma-separated fp32,bf16,int8 (default: fp32, bf16 where native, int8 where the "
            "engine's int8 path is installed)"
        ),
    ),
    Option(
        "peers",
        Param("comma-separated peer engines used directly (onnxruntime,openvino), or 'none' (default: all installed)"),
    ),
    Option("emulated_bf16", Param("also run bf16 where it would be emulated"), flag=True),
    Option(
        "images",
        Param(
            "directory of JPEGs for end to end and int8 calibration (without one: synthetic JPEGs; "
            "bench/: the shared real photos)"
        ),
        metavar="DIR",
    ),
    Option(
        "quick",
        Param(
            "short run: batch sizes 1,8, small timing budgets (pytest: CI-sized, optimized engines "
            "at the plan's precision only)"
        ),
        flag=True,
    ),
    Option(
        "budget",
        Param(
            "seconds of interleaved timing per batch size, shared by all paths",
            15.0,
            float,
            positive=True,
            unit="seconds",
        ),
        quick=4.0,
        scopes=(CLI,),
    ),
    Option(
        "alone_budget",
        Param("seconds of timing per path alone in a fresh process; 0: skip the alone columns", 6.0, float, minimum=0),
        quick=2.0,
        scopes=(CLI,),
    ),
    Option(
        "no_cold_start",
        Param("skip the cold-start measurement (classify in a fresh process per engine)"),
        flag=True,
        scopes=(CLI,),
    ),
    Option("output", Param("report path (default: bench-report-<machine key>.json)"), scopes=(CLI,), aliases=("-o",)),
    Option("no_progress", Param("no progress display on stderr"), flag=True, scopes=(CLI,)),
    Option(
        "enforce_targets",
        Param("exit non-zero (CLI: 3; pytest: a failed test) when a speed, cold-start or memory target is not met"),
        flag=True,
    ),
    Option("rounds", Param("rounds for batch-1 latency", 40, int, minimum=2), quick=16, scopes=(PYTEST,)),
    Option(
        "gate",
        Param(
            "judge this run against a saved baseline of this machine key (and, CLI: this model spec): "
            "BASELINE is its name (pytest: the end of its file name; no value: the newest); exit 1 (pytest: a "
            "failed session) on a regression, 2 when the baseline is missing or from another machine key"
        ),
        nargs="?",
        const="latest",
        metavar="BASELINE",
    ),
    Option(
        "save_baseline",
        Param("save this run as baseline NAME for this machine key and model spec (after --gate, only when it passes)"),
        scopes=(CLI,),
        metavar="NAME",
    ),
    Option(
        "baseline_dir",
        Param(
            "where baselines live (default: <artifact cache root>/baselines, i.e. "
            "$IPEX_RESNET_CACHE_DIR/baselines or ~/.cache/ipex_resnet/artifacts/baselines)"
        ),
        scopes=(CLI,),
        metavar="DIR",
    ),
    Option(
        "summary_md",
        Param(
            "append the gate's verdicts as a Markdown table to FILE (a PR comment, $GITHUB_STEP_SUMMARY); needs --gate"
        ),
        scopes=(CLI,),
        metavar="FILE",
    ),
    Option(
        "price_per_hour",
        Param(
            "this machine's price in USD per hour, recorded in the report (compare: cost per million images)",
            type=float,
            positive=True,
            unit="USD per hour",
        ),
        scopes=(CLI,),
        metavar="USD",
    ),
    Option(
        "scenarios",
        Param(
            "MLPerf-style scenarios driven by MLCommons' LoadGen, comma-separated: single-stream, "
            "offline, server (in process: on preprocessed images and decoding the JPEGs), service (Server against "
            "the HTTP service: the served capacity), peer (Server against LitServe serving the same engine), "
            "ray-serve (against Ray Serve with its own @serve.batch, the same engine), ray-service (our service on "
            "Ray Serve: ipex-resnet serve --ray; 'all' includes both Ray ones where Ray Serve is installed), all, "
            "none (default: none)"
        ),
        scopes=(CLI,),
        metavar="LIST",
    ),
    Option(
        "ray_replicas",
        Param(
            "replicas of the ray-service scenario (our service on Ray Serve), the path's threads split among them",
            1,
            int,
            minimum=1,
            maximum=64,
        ),
        scopes=(CLI,),
        metavar="N",
    ),
    Option(
        "scenario_path",
        Param("ENGINE/PRECISION the scenarios run on (default: our path with the most img/s at the largest batch)"),
        scopes=(CLI,),
        metavar="PATH",
    ),
    Option(
        "p99_ms",
        Param("the Server scenarios' p99 latency bound in ms", P99_MS, float, positive=True, unit="milliseconds"),
        scopes=(CLI,),
        metavar="MS",
    ),
    Option(
        "scenario_budget",
        Param("seconds per LoadGen run", 10.0, float, positive=True, unit="seconds"),
        quick=3.0,
        scopes=(CLI,),
        metavar="S",
    ),
    Option(
        "time_tolerance",
        Param("allowed growth of a ratio to the eager reference", TIME_TOLERANCE, float, minimum=0),
        metavar="FRACTION",
    ),
    Option(
        "gate_rounds",
        Param(
            "--gate/--save-baseline: paired rounds (reference call, path call) per path and batch size in each "
            "gate process",
            GATE_ROUNDS,
            int,
            minimum=4,
            maximum=1000,
        ),
        scopes=(CLI,),
        metavar="N",
    ),
    Option(
        "gate_processes",
        Param(
            "--gate/--save-baseline: fresh single-threaded processes whose fastest calls the gate pools",
            GATE_PROCESSES,
            int,
            minimum=1,
            maximum=1000,
        ),
        scopes=(CLI,),
        metavar="N",
    ),
    Option(
        "gate_budget",
        Param(
            "--gate/--save-baseline: seconds per path the gate may spend in all, taking more processes "
            "(up to 24) while the measured noise leaves a check undecided; 0: never more than --gate-processes",
            GATE_BUDGET_S,
            float,
            minimum=0,
            maximum=86400,
            unit="seconds",
        ),
        scopes=(CLI,),
        metavar="S",
    ),
    Option(
        "memory_tolerance",
        Param(f"allowed relative growth of peak RSS, plus {MEMORY_SLACK_MB:g} MB", MEMORY_TOLERANCE, float, minimum=0),
        metavar="FRACTION",
    ),
)
DEFAULTS: dict[str, Any] = {o.dest: o.param.default for o in OPTIONS}


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    for o in OPTIONS:
        if CLI in o.scopes:
            parser.add_argument(o.cli_flag, *o.aliases, **o.kwargs(CLI))


def add_pytest_options(group: Any, **defaults: Any) -> None:
    """``defaults``: a different default for some options in the suites (e.g. ``images``)."""
    unknown = set(defaults) - {o.dest for o in OPTIONS}
    if unknown:
        raise ValueError(f"no such bench option: {', '.join(sorted(unknown))}")
    for o in OPTIONS:
        if PYTEST in o.scopes:
            group.addoption(o.pytest_flag, **o.kwargs(PYTEST, defaults.get(o.dest)))


def raw_from_cli(args: argparse.Namespace) -> dict[str, Any]:
    return {o.dest: getattr(args, o.dest) for o in OPTIONS if CLI in o.scopes}


def raw_from_pytest(config: Any) -> dict[str, Any]:
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
    model: ModelSpec = field(default_factory=ModelSpec)  # model, weights, preset, categories
    labels: str | None = None  # labelled images: accuracy columns
    threads: int | None = None
    batch_sizes: list[int] = field(default_factory=lambda: list(DEFAULT_BATCH_SIZES))
    backends: list[str] | None = None  # None: every engine that runs here
    precisions: list[str] | None = None  # None: fp32, bf16 where native, int8 where installed
    peers: list[str] | None = None  # None: every registered peer; []: none
    emulated_bf16: bool = False
    images: str | None = None
    quick: bool = False
    budget: float = DEFAULTS["budget"]
    alone_budget: float = DEFAULTS["alone_budget"]
    cold_start: bool = True
    output: str | None = None
    progress: bool = True
    enforce_targets: bool = False
    rounds: int = DEFAULTS["rounds"]
    gate: str | None = None
    save_baseline: str | None = None
    baseline_dir: str | None = None  # None: <artifact cache root>/baselines
    summary_md: str | None = None
    price_per_hour: float | None = None  # USD per hour of this machine
    scenarios: list[str] = field(default_factory=list)  # MLPerf-style scenarios to run (none by default)
    ray_replicas: int = DEFAULTS["ray_replicas"]  # replicas of the ray-service scenario
    scenario_path: str | None = None  # None: our path with the most img/s at the largest batch
    p99_ms: float = DEFAULTS["p99_ms"]
    scenario_budget: float = DEFAULTS["scenario_budget"]  # seconds per LoadGen run
    time_tolerance: float = DEFAULTS["time_tolerance"]
    memory_tolerance: float = DEFAULTS["memory_tolerance"]
    gate_rounds: int = DEFAULTS["gate_rounds"]
    gate_processes: int = DEFAULTS["gate_processes"]
    gate_budget: float = DEFAULTS["gate_budget"]


def settings(raw: Mapping[str, Any]) -> Settings:
    """Validate raw option values (from either front end) into :class:`Settings`: first every declared
    limit (one line naming the option), then the model, the inputs, the gate and the scenarios."""
    quick = bool(raw.get("quick"))
    checked = {o.dest: o.value(raw, quick) for o in OPTIONS if o.param.numeric}
    s = Settings(quick=quick)
    fields = {f.name for f in dataclasses.fields(Settings)}
    for dest, value in checked.items():
        if dest in fields:
            setattr(s, dest, value)
    s.model = _model_spec(raw, checked)
    s.output = raw.get("output")
    if s.output:
        out_dir = Path(s.output).resolve().parent
        if not out_dir.is_dir():
            raise ConfigError(f"--output directory {str(out_dir)!r} does not exist")
    s.progress = not raw.get("no_progress")
    s.enforce_targets = bool(raw.get("enforce_targets"))
    s.cold_start = not raw.get("no_cold_start")
    s.gate = raw.get("gate")
    _gate_settings(s, raw)
    _scenario_settings(s, raw)
    _input_settings(s, raw)
    return s


def _model_spec(raw: Mapping[str, Any], checked: Mapping[str, Any]) -> ModelSpec:
    """The model spec; a bad model name, checkpoint or preset fails here, in one line."""
    from ipex_resnet.benchmarking.inputs import resolved
    from ipex_resnet.models.resolve import check_model_name

    name = raw.get("model") or DEFAULTS["model"]
    spec = ModelSpec.from_options(
        name if is_import_path(name) else check_model_name(name),
        raw.get("weights") or DEFAULTS["weights"],
        preset=raw.get("preset"),
        resize=checked["resize"],
        crop=checked["crop"],
        mean=raw.get("mean"),
        std=raw.get("std"),
        interpolation=raw.get("interpolation"),
    )
    resolved(spec)
    return spec


def _input_settings(s: Settings, raw: Mapping[str, Any]) -> None:
    """What is measured and on what: the paths, batch sizes, images and labels (checked before anything is)."""
    from ipex_resnet import engines
    from ipex_resnet.benchmarking import peers as peer_registry
    from ipex_resnet.benchmarking.inputs import image_files, resolved

    s.batch_sizes = parse_batch_sizes(raw.get("batch_sizes"), QUICK_BATCH_SIZES if s.quick else DEFAULT_BATCH_SIZES)
    s.backends = parse_list(raw.get("backends"), engines.names(), "backend")
    s.precisions = parse_list(raw.get("precisions"), engines.PRECISIONS, "precision")
    peer_arg = str(raw.get("peers") or "").strip().lower()
    s.peers = [] if peer_arg == "none" else parse_list(raw.get("peers"), peer_registry.engines_with_peers(), "peer")
    s.emulated_bf16 = bool(raw.get("emulated_bf16"))
    s.images = raw.get("images") or None
    if s.images is not None:
        image_files(s.images)  # fails early, naming the directory
    s.labels = raw.get("labels") or None
    if s.labels:
        from ipex_resnet.core.evaluate import read_labels

        read_labels(s.labels, resolved(s.model).categories)  # bad labels fail before anything is measured


def _scenario_settings(s: Settings, raw: Mapping[str, Any]) -> None:
    """The LoadGen scenarios; with scenarios asked for, their packages must be installed."""
    from ipex_resnet.benchmarking.scenarios import parse_scenarios
    from ipex_resnet.util.deps import first_missing

    s.scenarios = parse_scenarios(raw.get("scenarios"))
    s.scenario_path = (raw.get("scenario_path") or "").strip().lower() or None
    needs = {"mlperf_loadgen": "mlcommons-loadgen"}
    ray = {"ray-serve", "ray-service"} & set(s.scenarios)
    if {"service", "peer"} & set(s.scenarios) or ray:
        needs.update(httpx="httpx", aiohttp="aiohttp")
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
    """The baseline and gate options (checked before anything is measured)."""
    from ipex_resnet.benchmarking.baseline import check_name

    s.save_baseline = check_name(raw.get("save_baseline"), "--save-baseline")
    s.baseline_dir = raw.get("baseline_dir") or None
    s.summary_md = raw.get("summary_md") or None
    if s.summary_md and not s.gate:
        raise ConfigError("--summary-md needs --gate NAME (the table is the gate's verdicts)")


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
