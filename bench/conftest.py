"""pytest-benchmark suites for ipex_resnet: options, the path matrix, shared fixtures and the gate.

Run from the repo root (see docs/benchmarks.md):

    python -m pytest bench --benchmark-save=baseline        # save a baseline for this machine key
    python -m pytest bench --bench-gate                     # compare with it; non-zero exit on regression

Baselines live in ``.benchmarks/<machine key>/`` (CPU model + ISA level + torch/IPEX versions +
threads) unless ``--benchmark-storage`` is given, so two SKUs or stacks never judge each other.
"""

from __future__ import annotations

import sys
import tempfile
import time
import warnings
from pathlib import Path

import pytest

from ipex_resnet import report as R

REPO = Path(__file__).resolve().parent.parent
DEFAULT_IMAGES = REPO.parent / "shared" / "data" / "imagenet-samples"
DEFAULT_STORAGE = "file://./.benchmarks"


def pytest_addoption(parser):
    g = parser.getgroup("ipex_resnet bench")
    g.addoption("--bench-model", default="resnet18", help="torchvision model name (random weights)")
    g.addoption("--bench-backends", default=None, help="comma-separated ipex,inductor,eager (default: all that run)")
    g.addoption("--bench-precisions", default=None, help="comma-separated fp32,bf16 (default: both; bf16 if native)")
    g.addoption("--bench-emulated-bf16", action="store_true", help="also run bf16 where it is emulated")
    g.addoption("--bench-peers", default=None, help="comma-separated onnxruntime,openvino, or none (default: all)")
    g.addoption("--bench-batch-sizes", default=None, help="throughput batch sizes (default: 8,32; quick: 8)")
    g.addoption("--bench-threads", type=int, default=None, help="intra-op threads (default: the plan's)")
    g.addoption("--bench-images", default=str(DEFAULT_IMAGES), help="directory of real JPEGs for end to end")
    g.addoption("--bench-rounds", type=int, default=None, help="rounds for batch-1 latency (default: 40; quick: 20)")
    g.addoption("--bench-quick", action="store_true",
                help="CI-sized: fewer rounds, batch 8 only, Inductor at the plan's precision only, no Inductor cold start")
    g.addoption("--bench-gate", nargs="?", const="latest", default=None, metavar="BASELINE",
                help="compare ratios-to-reference and memory with a saved baseline (the newest, or one whose "
                     "file name matches BASELINE) in this machine key's storage; exit non-zero on regression")
    g.addoption("--bench-time-tolerance", type=float, default=R.TIME_TOLERANCE,
                help=f"allowed growth of a ratio to the eager reference (default {R.TIME_TOLERANCE})")
    g.addoption("--bench-memory-tolerance", type=float, default=R.MEMORY_TOLERANCE,
                help=f"allowed relative growth of peak RSS deltas (default {R.MEMORY_TOLERANCE}, "
                     f"plus {R.MEMORY_SLACK_MB:g} MB)")


# ----------------------------------------------------------------------------------------------
# Configuration: markers, keyed storage, machine info
# ----------------------------------------------------------------------------------------------

class Context:
    """Everything the suites share, made once per session."""

    def __init__(self, config):
        import torch

        from ipex_resnet import backends, plan_for, probe
        from ipex_resnet.policy import BACKENDS, PRECISIONS

        opt = config.getoption
        self.quick = opt("--bench-quick")
        self.model = opt("--bench-model")
        self.cpu = probe()
        self.availability = backends.availability()
        self.plan = plan_for(self.cpu, "auto", "auto", opt("--bench-threads"))
        self.threads = self.plan.threads
        peers_opt = (opt("--bench-peers") or "").strip().lower()
        from ipex_resnet import peers

        self.paths, self.skipped = R.matrix(
            self.cpu, R.parse_list(opt("--bench-backends"), BACKENDS, "backend"),
            R.parse_list(opt("--bench-precisions"), PRECISIONS, "precision"),
            emulated_bf16=opt("--bench-emulated-bf16"),
            peers=[] if peers_opt == "none" else R.parse_list(opt("--bench-peers"), peers.PEERS, "peer"),
            availability=self.availability)
        if self.quick:  # CI-sized: optimized backends at the plan's precision only (one Inductor compile
            # family), eager at fp32 only (the reference); peers as they are
            plan_prec = "bf16" if self.cpu.has_native_bf16 else "fp32"
            for spec in list(self.paths):
                if spec.peer or spec.name == R.REFERENCE:
                    continue
                if spec.backend == "eager" or spec.precision != plan_prec:
                    self.paths.remove(spec)
                    self.skipped[spec.name] = "--bench-quick runs optimized backends at the plan's precision only"
        bs = opt("--bench-batch-sizes")
        self.batch_sizes = [b for b in R.parse_batch_sizes(bs or ("8" if self.quick else "8,32")) if b > 1]
        self.rounds = opt("--bench-rounds") or (16 if self.quick else 40)
        self.images_dir = Path(opt("--bench-images"))
        self.versions = R.versions()
        self.key = R.machine_key(self.cpu, self.versions, self.threads)
        self.slowdown = R.slowdown_fraction()
        self._built: dict[str, R.Built] = {}
        self._tmp = tempfile.TemporaryDirectory(prefix="ipex_resnet_bench_")
        self._onnx = None
        torch.set_num_threads(self.threads)

    def spec(self, name: str) -> R.PathSpec:
        return next(s for s in self.paths if s.name == name)

    def built(self, name: str) -> R.Built:
        """Load a path once per session (its load time and peak RSS are recorded then)."""
        if name not in self._built:
            import torch

            from ipex_resnet import peers
            from ipex_resnet.models import resolve

            spec = self.spec(name)
            if spec.peer and self._onnx is None:
                try:
                    self._onnx = peers.export_onnx(resolve(self.model, "none").module, Path(self._tmp.name) / "m.onnx")
                except Exception as exc:  # noqa: BLE001
                    pytest.skip(f"{name}: torch.onnx.export failed: {str(exc).strip().splitlines()[0][:200]}")
            try:
                self._built[name] = R.build_path(spec, self.model, self.threads,
                                                 onnx_path=self._onnx if spec.peer else None,
                                                 slowdown=self.slowdown)
            except peers.PeerUnavailable as exc:
                pytest.skip(str(exc))
            torch.set_num_threads(self.threads)
        return self._built[name]

    @property
    def reference(self) -> R.Built:
        return self.built(R.REFERENCE)


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
    lines = [f"ipex_resnet bench: {ctx.model} on {ctx.cpu.model_name} ({ctx.cpu.isa_level}), {ctx.threads} threads; "
             f"key {ctx.key}",
             f"paths: {', '.join(s.name for s in ctx.paths)}"]
    lines += [f"skipped {k}: {v}" for k, v in ctx.skipped.items()]
    if ctx.slowdown:
        lines.append(f"INJECTED SLOWDOWN: every non-reference path {ctx.slowdown:.0%} slower ({R.SLOWDOWN_ENV})")
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
            "times are not comparable across CPUs, stacks or thread counts")


def pytest_benchmark_update_json(config, benchmarks, output_json):
    """Every saved result also carries its ratio to the best peer in the same group."""
    by_group: dict[str, list[dict]] = {}
    for b in output_json["benchmarks"]:
        by_group.setdefault(b["group"], []).append(b)
    for group in by_group.values():
        peer_medians = [b["stats"]["median"] for b in group if b["extra_info"].get("kind") == "peer"]
        if peer_medians:
            best = min(peer_medians)
            for b in group:
                b["extra_info"]["ratio_to_best_peer_time"] = b["stats"]["median"] / best


# ----------------------------------------------------------------------------------------------
# Parametrization over the matrix
# ----------------------------------------------------------------------------------------------

def pytest_generate_tests(metafunc):
    ctx = getattr(metafunc.config, "_ipex_bench", None)
    if ctx is None:
        return
    if "path" in metafunc.fixturenames:
        want_peers = not getattr(metafunc.function, "_no_peers", False)
        skip_inductor = getattr(metafunc.function, "_quick_no_inductor", False) and ctx.quick
        params = []
        for spec in ctx.paths:
            if spec.peer and not want_peers:
                continue
            marks = ()
            if skip_inductor and spec.backend == "inductor":
                marks = pytest.mark.skip(reason="--bench-quick: no Inductor cold start (a full compile each)")
            if getattr(metafunc.function, "_quick_reference_and_best", False) and ctx.quick \
                    and spec.name != R.REFERENCE and spec.backend != ctx.plan.backend:
                marks = pytest.mark.skip(reason="--bench-quick: end to end for the planned backend and eager only")
            params.append(pytest.param(spec.name, id=spec.name.replace("/", "-"), marks=marks))
        for name, why in ctx.skipped.items():
            spec_peer = name.split("/")[0] in ("onnxruntime", "openvino")
            if spec_peer and not want_peers:
                continue
            params.append(pytest.param(name, id=name.replace("/", "-"), marks=pytest.mark.skip(reason=why)))
        metafunc.parametrize("path", params)
    if "batch" in metafunc.fixturenames:
        metafunc.parametrize("batch", ctx.batch_sizes, ids=[f"b{b}" for b in ctx.batch_sizes])


def no_peers(fn):
    fn._no_peers = True
    return fn


def quick_reference_and_best(fn):
    fn._quick_reference_and_best = True
    return fn


def quick_no_inductor(fn):
    fn._quick_no_inductor = True
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
    files = sorted(p for p in d.glob("*") if p.suffix.lower() in (".jpeg", ".jpg")) if d.is_dir() else []
    if not files:
        pytest.skip(f"no real photos at {d} (pass --bench-images DIR)")
    return files[:4] if ctx.quick else files[:32]


@pytest.fixture(scope="session")
def large_jpeg(photos, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("large") / "large_1920x1080.jpg"
    out.write_bytes(R.upscale_jpeg(photos[0].read_bytes(), (1920, 1080)))
    return out


def measure(benchmark, ctx: Context, built: R.Built, fn, args_for_round, ref_fn, *, rounds: int,
            warmup_rounds: int = 1, items: int = 1, memory_call=None) -> dict:
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
    info.update({
        "path": built.spec.name, "kind": built.spec.kind, "backend": built.spec.backend,
        "precision": built.spec.precision, "model": ctx.model, "threads": ctx.threads,
        "p50_ms": R.quantile(data, 0.5) * 1e3, "p90_ms": R.quantile(data, 0.9) * 1e3,
        "p99_ms": R.quantile(data, 0.99) * 1e3, "items_per_s": items / R.quantile(data, 0.5),
        "ref_p50_ms": R.quantile(ref_times, 0.5) * 1e3,
        **{f"ratio_to_ref_{k}": v for k, v in R.ratio_estimates(data, ref_times).items()},
        "ratio_to_ref": R.ratio_estimates(data, ref_times)[R.GATE_ESTIMATOR],
        "ratio_estimator": R.GATE_ESTIMATOR,
        "load_s": built.load_s, "load_peak_rss_mb": built.load_peak_rss_mb,
        "load_delta_rss_mb": built.load_delta_rss_mb, "injected_slowdown": ctx.slowdown,
    })
    with R.PeakRSS() as mem:
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
    which = config.getoption("--bench-gate", default=None)
    bs = getattr(config, "_benchmarksession", None)
    if not which or bs is None:
        return
    tr = config.pluginmanager.get_plugin("terminalreporter")
    write = (lambda s: tr.write_line(s)) if tr else (lambda s: print(s, file=sys.stderr))
    pattern = which if any(c in which for c in "*?[/") or Path(which).is_file() else f"*{which}"
    files = list(bs.storage.load()) if which == "latest" else list(bs.storage.load(pattern))
    if not files:
        write(f"error: --bench-gate: no baseline{'' if which == 'latest' else ' matching ' + repr(which)} in "
              f"{bs.storage.path}; save one first: python -m pytest bench --benchmark-save=baseline")
        session.exitstatus = pytest.ExitCode.USAGE_ERROR
        return
    path, baseline = files[-1]
    current = [{"fullname": b.fullname, "extra_info": dict(b.extra_info)} for b in bs.benchmarks if not b.has_error]
    result = R.gate(current, baseline["benchmarks"],
                    time_tolerance=config.getoption("--bench-time-tolerance"),
                    memory_tolerance=config.getoption("--bench-memory-tolerance"))
    write("")
    write(f"ipex_resnet gate vs {path} ({len(result.checked)} checks; time: ratio to the interleaved "
          f"{R.REFERENCE} reference +{config.getoption('--bench-time-tolerance'):.0%}; memory: peak RSS delta "
          f"+{config.getoption('--bench-memory-tolerance'):.0%} +{R.MEMORY_SLACK_MB:g} MB)")
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
