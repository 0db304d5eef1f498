"""pytest-benchmark suites for ipex_resnet: options, the path matrix, shared fixtures and the gate.

Run from the repo root (see docs/benchmarks.md):

    python -m pytest bench --benchmark-save=baseline        # save a baseline for this machine key
    python -m pytest bench --bench-gate                     # compare with it; non-zero exit on regression

Baselines live in ``.benchmarks/<machine key>/`` (CPU model + ISA level + torch/IPEX versions +
threads) unless ``--benchmark-storage`` is given, so two SKUs or stacks never judge each other.
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import pytest
from shared_photos import SAMPLES

from ipex_resnet.benchmarking import gate as G
from ipex_resnet.benchmarking import options as O
from ipex_resnet.benchmarking import timing as T
from ipex_resnet.benchmarking.matrix import REFERENCE, PathSpec, matrix
from ipex_resnet.benchmarking.memory import PeakRSS
from ipex_resnet.benchmarking.paths import Built, Workspace, build_path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_IMAGES = SAMPLES
DEFAULT_STORAGE = "file://./.benchmarks"


def pytest_addoption(parser):
    # the same declarations as `ipex-resnet bench`; the suites default to the real photos when present
    O.add_pytest_options(
        parser.getgroup("ipex_resnet bench"),
        images=str(DEFAULT_IMAGES) if DEFAULT_IMAGES.is_dir() else None,
        time_tolerance=O.SUITE_TIME_TOLERANCE,
    )


# ----------------------------------------------------------------------------------------------
# Configuration: markers, keyed storage, machine info
# ----------------------------------------------------------------------------------------------


class Context:
    """Everything the suites share, made once per session."""

    def __init__(self, config):
        from ipex_resnet import engines, plan_for, probe
        from ipex_resnet.benchmarking.inputs import jpegs
        from ipex_resnet.benchmarking.machine import machine_key, versions

        self.settings = s = O.settings(O.raw_from_pytest(config))
        self.quick = s.quick
        self.model = s.model  # the ModelSpec: model, weights, preset, categories
        self.cpu = probe()
        self.availability = engines.availability()
        self.plan = plan_for(self.cpu, "auto", "auto", s.threads)
        self.threads = self.plan.threads
        self.paths, self.skipped = matrix(
            self.cpu,
            s.backends,
            s.precisions,
            emulated_bf16=s.emulated_bf16,
            peers=s.peers,
            availability=self.availability,
        )
        if self.quick:  # CI-sized: optimized engines at the plan's precision only (one Inductor compile
            # family), eager at fp32 only (the reference); peers as they are (int8 ones only when asked for)
            from ipex_resnet.core.policy import make_plan

            def plan_prec(b):  # the precision `auto` picks for this engine here
                return make_plan(self.cpu, b, "auto", 1, availability=self.availability, env={}).precision

            for spec in list(self.paths):
                if spec.name == REFERENCE:
                    continue
                if spec.peer:
                    if spec.precision != "int8" or s.precisions:
                        continue
                elif spec.backend != "eager" and spec.precision == plan_prec(spec.backend):
                    continue
                self.paths.remove(spec)
                self.skipped[spec.name] = "--bench-quick runs optimized engines at the plan's precision only"
        self.batch_sizes = [b for b in s.batch_sizes if b > 1]
        self.rounds = s.rounds
        self.images_dir = Path(s.images) if s.images else None
        self.versions = versions()
        self.key = machine_key(self.cpu, self.versions, self.threads)
        self.slowdown = T.slowdown_fraction()
        self._built: dict[str, Built] = {}
        self.ws = Workspace(self.model, jpegs(s.images, 32) if s.images else None)
        self.crop = self.ws.crop

    def spec(self, name: str) -> PathSpec:
        return next(s for s in self.paths if s.name == name)

    def built(self, name: str) -> Built:
        """Load a path once per session (its load time and peak RSS are recorded then)."""
        if name not in self._built:
            from ipex_resnet.errors import BackendUnavailable

            spec = self.spec(name)
            try:
                self._built[name] = build_path(spec, self.ws, self.threads, slowdown=self.slowdown)
            except BackendUnavailable as exc:
                pytest.skip(str(exc))
            import torch

            torch.set_num_threads(self.threads)
        return self._built[name]

    @property
    def reference(self) -> Built:
        return self.built(REFERENCE)

    def batch(self, n: int, seed: int = 0):
        from ipex_resnet.benchmarking.inputs import batch

        return batch(n, self.crop, seed)


def pytest_configure(config):
    config.addinivalue_line("markers", "latency: batch-1 model-only latency")
    config.addinivalue_line("markers", "throughput: batched model-only throughput")
    config.addinivalue_line("markers", "end_to_end: JPEG bytes -> top-5 labels")
    config.addinivalue_line("markers", "cold_start: process start -> first result (subprocess)")
    if not hasattr(config.option, "benchmark_storage"):
        return  # pytest-benchmark not installed / disabled: the suites will error on the fixture
    from ipex_resnet.errors import IpexResnetError

    try:
        ctx = config._ipex_bench = Context(config)
    except IpexResnetError as exc:
        raise pytest.UsageError(str(exc)) from None
    if config.option.benchmark_storage == DEFAULT_STORAGE:
        config.option.benchmark_storage = f"file://{REPO / '.benchmarks' / ctx.key}"


def pytest_report_header(config):
    ctx = getattr(config, "_ipex_bench", None)
    if ctx is None:
        return None
    lines = [
        f"ipex_resnet bench: {ctx.model.model} on {ctx.cpu.model_name} ({ctx.cpu.isa_level}), {ctx.threads} threads; "
        f"key {ctx.key}",
        f"paths: {', '.join(s.name for s in ctx.paths)}",
    ]
    lines += [f"skipped {k}: {v}" for k, v in ctx.skipped.items()]
    if ctx.slowdown:
        lines.append(f"INJECTED SLOWDOWN: every non-reference path {ctx.slowdown:.0%} slower ({T.SLOWDOWN_ENV})")
    return lines


def pytest_benchmark_update_machine_info(config, machine_info):
    ctx = getattr(config, "_ipex_bench", None)
    if ctx is None:
        return
    machine_info["cpu_model"] = ctx.cpu.model_name
    machine_info["isa_level"] = ctx.cpu.isa_level
    machine_info["cpu_flags"] = sorted(ctx.cpu.flags)
    machine_info["torch"] = ctx.versions["torch"]
    machine_info["ipex"] = ctx.versions["intel_extension_for_pytorch"]
    machine_info["threads"] = ctx.threads
    machine_info["ipex_resnet_key"] = ctx.key


def pytest_benchmark_compare_machine_info(config, benchmarksession, machine_info, compared_benchmark):
    theirs = compared_benchmark.get("machine_info", {}).get("ipex_resnet_key")
    if theirs != machine_info.get("ipex_resnet_key"):
        benchmarksession.logger.warning(
            f"baseline was saved on {theirs!r}, this run is {machine_info.get('ipex_resnet_key')!r}: "
            "times are not comparable across CPUs, stacks or thread counts"
        )


def pytest_benchmark_update_json(config, benchmarks, output_json):
    """Every saved result also carries its ratio to the best peer in the same group at the same precision."""
    by_group: dict[tuple, list[dict]] = {}
    for b in output_json["benchmarks"]:
        by_group.setdefault((b["group"], b["extra_info"].get("precision")), []).append(b)
    for group in by_group.values():
        peer_medians = [b["stats"]["median"] for b in group if b["extra_info"].get("kind") == "peer"]
        if peer_medians:
            best = min(peer_medians)
            for b in group:
                b["extra_info"]["ratio_to_best_peer_time"] = b["stats"]["median"] / best


def suite_targets(benchmarks, batch_sizes, planned: str | None = None) -> list[dict]:
    """The report's targets (benchmarking.report.targets) from this session's results: batch-1 latency
    and largest-batch throughput vs the best peer at the same precision, cold starts, and the input
    pipeline's (end to end of the ``planned`` path vs its batch-1 latency, bulk vs model-only)."""
    from ipex_resnet.benchmarking.report import targets

    paths: dict[str, dict] = {}
    cold: dict[str, dict] = {}
    pipe: dict = {"path": planned, "costs": {}}
    bmax = max(batch_sizes, default=1)
    e2e_groups = {"e2e-photos": "photo", "e2e-1920x1080": "1920x1080"}
    for b in benchmarks:
        info = dict(b.extra_info)
        if b.group == "cold-start" and "to_first_top5_s" in info:
            cold[info["engine"]] = info
            continue
        if b.group == "bulk" and "ratio" in info:
            pipe["bulk"] = info
            continue
        if "stage" in info:
            pipe["costs"].setdefault(info["case"], {"size": info["size"]})[f"{info['stage']}_ms"] = info["p50_ms"]
            continue
        if "path" not in info:
            continue
        row = paths.setdefault(
            info["path"], {"kind": info["kind"], "precision": info["precision"], "latency": {}, "throughput": {}}
        )
        if b.group == "latency-b1":
            row["latency"]["1"] = {"p50_ms": info["p50_ms"]}
        elif b.group == f"throughput-b{bmax}":
            row["throughput"][str(bmax)] = info["images_per_s"]
        elif b.group in e2e_groups:
            row.setdefault("end_to_end", {})[e2e_groups[b.group]] = {"p50_ms": info["p50_ms"]}
    return targets({"paths": paths, "batch_sizes": [1, bmax], "cold_start": cold, "input_pipeline": pipe})


# ----------------------------------------------------------------------------------------------
# Parametrization over the matrix
# ----------------------------------------------------------------------------------------------


def pytest_generate_tests(metafunc):
    ctx = getattr(metafunc.config, "_ipex_bench", None)
    if ctx is None:
        return
    if "path" in metafunc.fixturenames:
        want_peers = not getattr(metafunc.function, "_no_peers", False)
        params = []
        for spec in ctx.paths:
            if spec.peer and not want_peers:
                continue
            marks = ()
            if (
                getattr(metafunc.function, "_quick_reference_and_best", False)
                and ctx.quick
                and spec.name != REFERENCE
                and spec.backend != ctx.plan.backend
            ):
                marks = pytest.mark.skip(reason="--bench-quick: end to end for the planned backend and eager only")
            params.append(pytest.param(spec.name, id=spec.id, marks=marks))
        for name, why in ctx.skipped.items():
            if name.endswith(" (peer)") and not want_peers:
                continue
            pid = ("peer-" if name.endswith(" (peer)") else "") + name.replace(" (peer)", "").replace("/", "-")
            params.append(pytest.param(name, id=pid, marks=pytest.mark.skip(reason=why)))
        metafunc.parametrize("path", params)
    if "engine" in metafunc.fixturenames:  # cold start: one per engine of our paths
        names = list(dict.fromkeys(s.backend for s in ctx.paths if not s.peer))
        metafunc.parametrize("engine", names, ids=names)
    if "batch" in metafunc.fixturenames:
        metafunc.parametrize("batch", ctx.batch_sizes, ids=[f"b{b}" for b in ctx.batch_sizes])


def no_peers(fn):
    fn._no_peers = True
    return fn


def quick_reference_and_best(fn):
    fn._quick_reference_and_best = True
    return fn


# ----------------------------------------------------------------------------------------------
# Fixtures
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def ctx(request) -> Context:
    c = getattr(request.config, "_ipex_bench", None)
    if c is None:
        pytest.skip("pytest-benchmark is not active (pip install pytest-benchmark; don't pass -p no:benchmark)")
    return c


@pytest.fixture(scope="session")
def photos(ctx) -> list[Path]:
    d = ctx.images_dir
    files = sorted(p for p in d.glob("*") if p.suffix.lower() in (".jpeg", ".jpg")) if d and d.is_dir() else []
    if not files:
        pytest.skip(f"no real photos at {d} (pass --bench-images DIR)")
    return files[:4] if ctx.quick else files[:32]


@pytest.fixture(scope="session")
def e2e_photos(ctx, photos) -> list[Path]:
    """Photos of the end-to-end target's size (500x375), or the suite's photos when none has it."""
    from ipex_resnet.benchmarking.pipeline import pick_photos

    every = sorted(p for p in ctx.images_dir.glob("*") if p.suffix.lower() in (".jpeg", ".jpg"))
    return pick_photos(every, 4 if ctx.quick else 16, fallback=photos)


@pytest.fixture(scope="session")
def large_jpeg(photos, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("large") / "large_1920x1080.jpg"
    from ipex_resnet.benchmarking.inputs import upscale_jpeg

    out.write_bytes(upscale_jpeg(photos[0].read_bytes(), (1920, 1080)))
    return out


def measure(
    benchmark,
    ctx: Context,
    built: Built,
    fn,
    args_for_round,
    ref_fn,
    *,
    rounds: int,
    warmup_rounds: int = 1,
    items: int = 1,
    memory_call=None,
) -> dict:
    """Benchmark ``fn`` with pytest-benchmark, timing ``ref_fn`` on the same input right before each
    round (interleaved), and store the ratio, percentiles and peak RSS in ``extra_info``."""
    ref_times: list[float] = []
    state = {"i": 0}

    def setup():
        args = args_for_round(state["i"])
        state["i"] += 1
        t0 = time.perf_counter()
        ref_fn(*args)
        ref_times.append(time.perf_counter() - t0)
        return args, {}

    for i in range(warmup_rounds):  # untimed; Inductor recompiles for a new shape here
        fn(*args_for_round(i))
        ref_fn(*args_for_round(i))
    benchmark.pedantic(fn, setup=setup, rounds=rounds, iterations=1, warmup_rounds=0)
    data = list(benchmark.stats.stats.data)
    info = benchmark.extra_info
    info.update(
        {
            "path": built.spec.name,
            "kind": built.spec.kind,
            "backend": built.spec.backend,
            "precision": built.spec.precision,
            "model": ctx.model.model,
            "threads": ctx.threads,
            "p50_ms": T.quantile(data, 0.5) * 1e3,
            "p90_ms": T.quantile(data, 0.9) * 1e3,
            "p99_ms": T.quantile(data, 0.99) * 1e3,
            "items_per_s": items / T.quantile(data, 0.5),
            "ref_p50_ms": T.quantile(ref_times, 0.5) * 1e3,
            **{f"ratio_to_ref_{k}": v for k, v in T.ratio_estimates(data, ref_times).items()},
            "ratio_to_ref": T.ratio_estimates(data, ref_times)[T.GATE_ESTIMATOR],
            "ratio_estimator": T.GATE_ESTIMATOR,
            "load_s": built.load_s,
            "load_peak_rss_mb": built.load_peak_rss_mb,
            "load_delta_rss_mb": built.load_delta_rss_mb,
            "injected_slowdown": ctx.slowdown,
        }
    )
    with PeakRSS() as mem:
        (memory_call or (lambda: fn(*args_for_round(0))))()
    info["infer_peak_rss_mb"] = mem.peak_mb
    info["infer_delta_rss_mb"] = mem.delta_mb
    return info


# ----------------------------------------------------------------------------------------------
# The gate
# ----------------------------------------------------------------------------------------------


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    config = session.config
    bs = getattr(config, "_benchmarksession", None)
    ctx = getattr(config, "_ipex_bench", None)
    if bs is None or ctx is None:
        return
    tr = config.pluginmanager.get_plugin("terminalreporter")
    write = (lambda s: tr.write_line(s)) if tr else (lambda s: print(s, file=sys.stderr))
    done = [b for b in bs.benchmarks if not b.has_error]
    found = suite_targets(done, ctx.batch_sizes, f"{ctx.plan.backend}/{ctx.plan.precision}")
    if found:
        write("")
        from ipex_resnet.benchmarking.report import describe_target

        for t in found:
            write(f"ipex_resnet target: {describe_target(t)}")
        if ctx.settings.enforce_targets and not all(t["met"] for t in found):
            write("ipex_resnet targets: NOT all met (--bench-enforce-targets)")
            if session.exitstatus == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED
    which = config.getoption("--bench-gate", default=None)
    if not which:
        return
    pattern = which if any(c in which for c in "*?[/") or Path(which).is_file() else f"*{which}"
    files = list(bs.storage.load()) if which == "latest" else list(bs.storage.load(pattern))
    if not files:
        write(
            f"error: --bench-gate: no baseline{'' if which == 'latest' else ' matching ' + repr(which)} in "
            f"{bs.storage.path}; save one first: python -m pytest bench --benchmark-save=baseline"
        )
        session.exitstatus = pytest.ExitCode.USAGE_ERROR
        return
    path, baseline = files[-1]
    current = [{"fullname": b.fullname, "extra_info": dict(b.extra_info)} for b in bs.benchmarks if not b.has_error]
    result = G.gate(
        current,
        baseline["benchmarks"],
        time_tolerance=config.getoption("--bench-time-tolerance"),
        memory_tolerance=config.getoption("--bench-memory-tolerance"),
    )
    write("")
    write(
        f"ipex_resnet gate vs {path} ({len(result.checked)} checks; time: ratio to the interleaved "
        f"{REFERENCE} reference +{config.getoption('--bench-time-tolerance'):.0%}; memory: peak RSS delta "
        f"+{config.getoption('--bench-memory-tolerance'):.0%} +{O.MEMORY_SLACK_MB:g} MB)"
    )
    for name in result.missing:
        write(f"  not in baseline (not judged): {name}")
    for f in result.regressions:
        write(f"  REGRESSION {f.describe()}")
    if result.ok:
        write("  gate: PASS")
    else:
        write(f"  gate: FAIL ({len(result.regressions)} regression(s))")
        if session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


# Silence torch/IPEX chatter that would flood the benchmark table.
warnings.filterwarnings("ignore", category=UserWarning, module="torch.*")
