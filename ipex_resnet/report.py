"""``ipex-resnet bench``: run the backend x precision matrix (and peers) and write one JSON SKU report.

Also the measurement toolkit the pytest-benchmark suites in ``bench/`` share: the path matrix, the
builders, interleaved timing, peak-RSS tracking, the injected-slowdown switch and the baseline gate
(ratio to an interleaved reference, and memory), so the CLI report and the suites measure alike.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import platform
import re
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPORT_SCHEMA = "ipex_resnet.bench/1"
REFERENCE = "eager/fp32"
SLOWDOWN_ENV = "IPEX_RESNET_BENCH_SLOWDOWN"
# Gate thresholds, chosen from measured noise (docs/benchmarks.md, bench/gate_experiment.py).
TIME_TOLERANCE = 0.04
MEMORY_TOLERANCE = 0.10
MEMORY_SLACK_MB = 24.0
DEFAULT_BATCH_SIZES = (1, 8, 32)
QUICK_BATCH_SIZES = (1, 8)

Runner = Callable[["object"], "object"]


# ----------------------------------------------------------------------------------------------
# The matrix
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PathSpec:
    """One thing to measure: an ipex_resnet backend at a precision, or a peer runtime."""

    backend: str
    precision: str
    peer: bool = False

    @property
    def name(self) -> str:
        return f"{self.backend}/{self.precision}"

    @property
    def kind(self) -> str:
        return "peer" if self.peer else "ipex_resnet"


def parse_list(value: str | Sequence[str] | None, allowed: Sequence[str], what: str) -> list[str]:
    """Comma-separated (or list) option -> validated list; raises ConfigError naming the bad one."""
    from .errors import ConfigError

    if value is None:
        return list(allowed)
    items = value.split(",") if isinstance(value, str) else list(value)
    out = []
    for item in (i.strip().lower() for i in items):
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
    from .errors import ConfigError

    if value is None:
        return list(default)
    items = value.split(",") if isinstance(value, str) else list(value)
    out = []
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


def matrix(cpu, backends: Sequence[str] | None = None, precisions: Sequence[str] | None = None, *,
           emulated_bf16: bool = False, peers: Sequence[str] | None = None,
           availability: Mapping[str, tuple[bool, str]] | None = None,
           peer_availability: Mapping[str, tuple[bool, str]] | None = None,
           ) -> tuple[list[PathSpec], dict[str, str]]:
    """The paths this machine can run, and {path: reason} for the ones it skips.

    BF16 is included where the plan calls it native; emulated BF16 only when asked for. The eager
    FP32 reference is always included: every ratio is taken against it.
    """
    from . import backends as be
    from . import peers as pr
    from .errors import BackendUnavailable
    from .policy import BACKENDS, PRECISIONS, make_plan

    avail = be.availability() if availability is None else availability
    backends = list(BACKENDS) if backends is None else list(backends)
    precisions = list(PRECISIONS) if precisions is None else list(precisions)
    paths: list[PathSpec] = []
    skipped: dict[str, str] = {}
    for b in backends:
        for p in precisions:
            spec = PathSpec(b, p)
            try:
                plan = make_plan(cpu, b, p, 1, availability=avail, env={})
            except BackendUnavailable as exc:
                skipped[spec.name] = str(exc)
                continue
            if plan.emulated_bf16 and not emulated_bf16:
                skipped[spec.name] = "bf16 would be emulated on this CPU (no AVX512_BF16/AMX); ask for it explicitly"
                continue
            paths.append(spec)
    if PathSpec("eager", "fp32") not in paths:
        paths.insert(0, PathSpec("eager", "fp32"))
    peer_names = list(pr.PEERS) if peers is None else list(peers)
    pav = pr.availability() if peer_availability is None else peer_availability
    for name in peer_names:
        ok, why = pav.get(name, (False, f"unknown peer {name!r}"))
        for p in ("fp32", "bf16"):
            if name == "onnxruntime" and p == "bf16":
                continue
            spec = PathSpec(name, p, peer=True)
            if p not in precisions:
                continue
            if not ok:
                skipped[spec.name] = why
            elif p == "bf16" and not cpu.has_native_bf16:
                skipped[spec.name] = "no native BF16 on this CPU"
            else:
                paths.append(spec)
    return paths, skipped


# ----------------------------------------------------------------------------------------------
# Memory
# ----------------------------------------------------------------------------------------------

def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _read_hwm_mb() -> float | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


class PeakRSS:
    """Peak resident memory inside a ``with`` block, in MiB.

    Exact on Linux (resets the kernel's high-water mark, reads it back); elsewhere a psutil sampling
    thread every 2 ms. ``before_mb`` is RSS on entry, ``delta_mb`` what the block added at its peak.
    """

    def __init__(self):
        self.before_mb = self.peak_mb = 0.0
        self._thread = None
        self._stop = False

    @property
    def delta_mb(self) -> float:
        return max(0.0, self.peak_mb - self.before_mb)

    def __enter__(self) -> PeakRSS:
        self.before_mb = rss_mb()
        self._exact = _reset_hwm() and _read_hwm_mb() is not None
        if not self._exact:
            import threading

            self.peak_mb = self.before_mb

            def sample():
                while not self._stop:
                    self.peak_mb = max(self.peak_mb, rss_mb())
                    time.sleep(0.002)

            self._thread = threading.Thread(target=sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._exact:
            self.peak_mb = max(_read_hwm_mb() or 0.0, self.before_mb)
        else:
            self._stop = True
            self._thread.join()
            self.peak_mb = max(self.peak_mb, rss_mb())


# ----------------------------------------------------------------------------------------------
# Building runners
# ----------------------------------------------------------------------------------------------

@dataclass
class Built:
    spec: PathSpec
    runner: Runner
    load_s: float
    load_peak_rss_mb: float
    load_delta_rss_mb: float
    plan: dict | None = None
    classifier: object = None
    detail: str = ""


def slowdown_fraction() -> float:
    """The injected slowdown from ``IPEX_RESNET_BENCH_SLOWDOWN`` (0.10 = every call 10% slower)."""
    from .errors import ConfigError

    raw = os.environ.get(SLOWDOWN_ENV, "").strip()
    if not raw:
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{SLOWDOWN_ENV}={raw!r} is not a number (0.10 means 10% slower)") from None
    if not 0 <= value < 10:
        raise ConfigError(f"{SLOWDOWN_ENV}={raw!r} must be between 0 and 10")
    return value


def inject_slowdown(fn: Runner, fraction: float) -> Runner:
    """Make every call ``fraction`` slower by spinning after it (extra CPU work, not sleep)."""
    if fraction <= 0:
        return fn

    def slowed(x):
        t0 = time.perf_counter()
        out = fn(x)
        end = t0 + (time.perf_counter() - t0) * (1 + fraction)
        while time.perf_counter() < end:
            pass
        return out

    slowed.__wrapped__ = fn
    return slowed


def build_path(spec: PathSpec, model: str = "resnet18", threads: int | None = None, *,
               onnx_path: str | os.PathLike | None = None, slowdown: float = 0.0) -> Built:
    """Load one path (random weights), with its load time and peak RSS; the runner is warmed up.

    ``slowdown`` is applied to every path but the eager FP32 reference (see :func:`inject_slowdown`).
    """
    import torch

    from . import peers
    from .classifier import load
    from .models import resolve

    clf, plan, detail = None, None, ""
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        if spec.peer:
            threads = threads or torch.get_num_threads()
            module = resolve(model, "none").module if onnx_path is None else None
            runner = peers.prepare(spec.backend, module, threads, spec.precision, onnx_path=onnx_path)
            runner(torch.randn(1, 3, 224, 224))
            detail = peers.status(spec.backend)[1]
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                clf = load(model, weights="none", backend=spec.backend, precision=spec.precision, threads=threads)
            runner = clf
            plan = clf.plan.to_dict()
            detail = clf.plan.reasons.get("backend", "")
        load_s = time.perf_counter() - t0
    if slowdown and spec.name != REFERENCE:
        runner = inject_slowdown(runner, slowdown)
    return Built(spec, runner, load_s, mem.peak_mb, mem.delta_mb, plan, clf, detail)


# ----------------------------------------------------------------------------------------------
# Timing
# ----------------------------------------------------------------------------------------------

def quantile(samples: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile (numpy's default), ``q`` in [0, 1]."""
    s = sorted(samples)
    if not s:
        return math.nan
    pos = (len(s) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def summarize(samples: Sequence[float]) -> dict[str, float]:
    """Seconds per call -> milliseconds p50/p90/p99/mean/min and the sample count."""
    return {
        "p50_ms": quantile(samples, 0.5) * 1e3,
        "p90_ms": quantile(samples, 0.9) * 1e3,
        "p99_ms": quantile(samples, 0.99) * 1e3,
        "mean_ms": (sum(samples) / len(samples)) * 1e3 if samples else math.nan,
        "min_ms": min(samples) * 1e3 if samples else math.nan,
        "n": len(samples),
    }


def time_interleaved(runners: Mapping[str, Runner], x, *, rounds: int, calls_per_round: int = 1,
                     switch_warmup: int = 0, progress: Callable[[int, int], None] | None = None) -> dict[str, list[float]]:
    """Seconds per call for every runner, measured round-robin (order rotated every round).

    Interleaving means a burst of noise from a neighbour lands on all paths alike, so ratios between
    paths stay stable even when absolute times drift. ``switch_warmup`` untimed calls precede each
    path's block: OpenMP, TBB and ORT thread pools spin for a while after a call, and on a small
    machine the first call after a switch pays for the previous runtime's spinning threads.
    """
    names = list(runners)
    out: dict[str, list[float]] = {n: [] for n in names}
    clock = time.perf_counter
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            fn = runners[name]
            for _ in range(switch_warmup):
                fn(x)  # untimed: absorbs the switch from another runtime's thread pool
            for _ in range(calls_per_round):
                t0 = clock()
                fn(x)
                out[name].append(clock() - t0)
        if progress:
            progress(r + 1, rounds)
    return out


RATIO_ESTIMATORS = ("p50", "paired", "p25", "min")
# The estimator the gate uses (chosen from bench/gate_experiment.py; see docs/benchmarks.md).
GATE_ESTIMATOR = "min"


def ratio_estimates(cand: Sequence[float], ref: Sequence[float]) -> dict[str, float]:
    """Candidate / reference time, several ways, from interleaved samples (cand[i] ran next to ref[i]).

    ``p50``: ratio of medians; ``paired``: median of per-round ratios (cancels noise that lasts a
    round); ``p25`` / ``min``: ratio of lower quantiles (noise only ever adds time).
    """
    n = min(len(cand), len(ref))
    return {
        "p50": quantile(cand, 0.5) / quantile(ref, 0.5),
        "paired": quantile([cand[i] / ref[i] for i in range(n)], 0.5),
        "p25": quantile(cand, 0.25) / quantile(ref, 0.25),
        "min": min(cand) / min(ref),
    }


def interleaved_ratio(candidate: Runner, reference: Runner, x, rounds: int = 30) -> tuple[float, list[float], list[float]]:
    """Candidate / reference time (the gate's estimator), measured alternately call by call."""
    t = time_interleaved({"cand": candidate, "ref": reference}, x, rounds=rounds)
    return ratio_estimates(t["cand"], t["ref"])[GATE_ESTIMATOR], t["cand"], t["ref"]


# ----------------------------------------------------------------------------------------------
# Machine identity (keys baselines, labels reports)
# ----------------------------------------------------------------------------------------------

def versions() -> dict[str, str | None]:
    import importlib.metadata

    import torch

    from . import __version__

    def v(dist: str) -> str | None:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": v("torchvision"),
        "intel_extension_for_pytorch": v("intel-extension-for-pytorch"),
        "onnxruntime": v("onnxruntime"),
        "openvino": v("openvino"),
        "ipex_resnet": __version__,
    }


def thread_settings() -> dict[str, object]:
    import torch

    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    return {
        "torch_num_threads": torch.get_num_threads(),
        "torch_num_interop_threads": torch.get_num_interop_threads(),
        "affinity_cpus": affinity,
        "env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "KMP_AFFINITY",
                                           "IPEX_RESNET_THREADS", "OMP_PROC_BIND") if k in os.environ},
    }


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()[:60] or "unknown"


def machine_key(cpu, vers: Mapping[str, str | None] | None = None, threads: int | None = None) -> str:
    """A filesystem-safe key: CPU model + ISA level + torch/IPEX versions (+ threads).

    Baselines are stored per key so two SKUs (or two stacks) never overwrite or judge each other.
    """
    vers = versions() if vers is None else vers
    parts = [_slug(cpu.model_name), cpu.isa_level, "torch" + str(vers.get("torch") or "?").split("+")[0]]
    ipex = vers.get("intel_extension_for_pytorch")
    parts.append("ipex" + ipex.split("+")[0] if ipex else "noipex")
    if threads:
        parts.append(f"t{threads}")
    return "_".join(parts)


# ----------------------------------------------------------------------------------------------
# The baseline gate (pure functions over pytest-benchmark JSON)
# ----------------------------------------------------------------------------------------------

@dataclass
class Finding:
    name: str
    metric: str
    baseline: float
    current: float
    limit: float

    @property
    def change(self) -> float:
        return self.current / self.baseline - 1 if self.baseline else math.inf

    def describe(self) -> str:
        return (f"{self.name}: {self.metric} {self.current:.4g} vs baseline {self.baseline:.4g} "
                f"({self.change:+.1%}, limit {self.limit:.4g})")


@dataclass
class GateResult:
    regressions: list[Finding] = field(default_factory=list)
    checked: list[Finding] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.regressions


TIME_KEYS = ("ratio_to_ref",)
MEMORY_KEYS = ("load_delta_rss_mb", "infer_delta_rss_mb", "cold_peak_rss_mb")


def gate(current: Iterable[Mapping], baseline: Iterable[Mapping], *, time_tolerance: float = TIME_TOLERANCE,
         memory_tolerance: float = MEMORY_TOLERANCE, memory_slack_mb: float = MEMORY_SLACK_MB) -> GateResult:
    """Compare benchmarks (pytest-benchmark dicts, with ``extra_info``) against a baseline.

    Time: ``extra_info["ratio_to_ref"]`` (median time / interleaved eager-FP32 median) may grow by
    ``time_tolerance``. Memory: each ``*_delta_rss_mb`` may grow by ``memory_tolerance`` plus
    ``memory_slack_mb`` (small deltas are page-granular noise). Benchmarks without a baseline entry
    are listed in ``missing``, never failed.
    """
    base = {b["fullname"]: b.get("extra_info", {}) for b in baseline}
    result = GateResult()
    for bench in current:
        name, info = bench["fullname"], bench.get("extra_info", {})
        if name not in base:
            result.missing.append(name)
            continue
        old = base[name]
        for key in TIME_KEYS:
            if info.get("path") == REFERENCE:
                continue  # the reference against itself: ~1 by construction, no information
            if key in info and key in old and old[key]:
                f = Finding(name, key, float(old[key]), float(info[key]), float(old[key]) * (1 + time_tolerance))
                result.checked.append(f)
                if f.current > f.limit:
                    result.regressions.append(f)
        for key in MEMORY_KEYS:
            if key in info and key in old:
                limit = float(old[key]) * (1 + memory_tolerance) + memory_slack_mb
                f = Finding(name, key, float(old[key]), float(info[key]), limit)
                result.checked.append(f)
                if f.current > f.limit:
                    result.regressions.append(f)
    return result


# ----------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------

def synthetic_jpeg(width: int = 500, height: int = 375, seed: int = 0) -> bytes:
    """A photo-like JPEG (smooth gradients + noise), made in memory: the bundled default input."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.stack([128 + 100 * np.sin(xx / 40 + seed), 128 + 100 * np.cos(yy / 30),
                    128 + 60 * np.sin((xx + yy) / 70)], axis=-1)
    img = np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def upscale_jpeg(data: bytes, size: tuple[int, int] = (1920, 1080)) -> bytes:
    from PIL import Image

    img = Image.open(io.BytesIO(data)).convert("RGB").resize(size, Image.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def load_images(directory: str | os.PathLike, limit: int | None = None) -> list[bytes]:
    from .errors import ConfigError

    d = Path(directory)
    if not d.is_dir():
        raise ConfigError(f"--images {str(d)!r} is not a directory")
    files = sorted(p for p in d.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not files:
        raise ConfigError(f"--images {str(d)!r} holds no .jpg/.jpeg/.png files")
    return [p.read_bytes() for p in files[:limit]]


# ----------------------------------------------------------------------------------------------
# The report
# ----------------------------------------------------------------------------------------------

class Progress:
    """One-line progress on stderr (rewritten in place on a terminal, plain lines otherwise)."""

    def __init__(self, stream=None, enabled: bool = True):
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.t0 = time.perf_counter()
        self._last = ""

    def step(self, msg: str) -> None:
        if not self.enabled:
            return
        line = f"[{time.perf_counter() - self.t0:6.1f}s] {msg}"
        if self.tty:
            self.stream.write("\r\033[K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
        self._last = line

    def tick(self, msg: str, done: int, total: int) -> None:
        if self.tty or done == total:
            self.step(f"{msg} {done}/{total}")

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _rounds_for(per_round_s: float, budget_s: float, lo: int, hi: int) -> int:
    return int(max(lo, min(hi, budget_s / max(per_round_s, 1e-6))))


def run_report(*, model: str = "resnet18", threads: int | None = None, batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
               backends: Sequence[str] | None = None, precisions: Sequence[str] | None = None,
               peers: Sequence[str] | None = None, emulated_bf16: bool = False, quick: bool = False,
               images: Sequence[bytes] | None = None, budget_s: float | None = None,
               progress: Progress | None = None) -> dict:
    """Measure every path of the matrix, interleaved, and return the report document."""
    import tempfile

    import torch

    from . import backends as be
    from . import peers as pr
    from .classifier import plan_for
    from .cpu import probe
    from .models import resolve

    progress = progress or Progress(enabled=False)
    budget_s = budget_s if budget_s is not None else (4.0 if quick else 15.0)
    cpu = probe()
    avail = be.availability()
    paths, skipped = matrix(cpu, backends, precisions, emulated_bf16=emulated_bf16, peers=peers, availability=avail)
    auto_plan = plan_for(cpu, "auto", "auto", threads)
    threads = threads or auto_plan.threads
    torch.set_num_threads(threads)
    slow = slowdown_fraction()

    built: dict[str, Built] = {}
    onnx_path = None
    tmp = tempfile.TemporaryDirectory(prefix="ipex_resnet_bench_")
    for i, spec in enumerate(paths, 1):
        progress.step(f"loading {spec.name} ({i}/{len(paths)})")
        try:
            if spec.peer and onnx_path is None:
                onnx_path = pr.export_onnx(resolve(model, "none").module, Path(tmp.name) / "model.onnx")
            built[spec.name] = build_path(spec, model, threads, onnx_path=onnx_path if spec.peer else None,
                                          slowdown=slow)
        except Exception as exc:  # noqa: BLE001 - one path failing must not sink the report
            if spec.name == REFERENCE:
                raise
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            skipped[spec.name] = f"failed to load: {first[:300]}"
    torch.set_num_threads(threads)

    crop = 224
    results: dict[str, dict] = {name: {"kind": b.spec.kind, "backend": b.spec.backend, "precision": b.spec.precision,
                                       "detail": b.detail, "plan": b.plan, "load_s": b.load_s,
                                       "load_peak_rss_mb": b.load_peak_rss_mb,
                                       "load_delta_rss_mb": b.load_delta_rss_mb, "latency": {}, "throughput": {}}
                                for name, b in built.items()}
    runners = {name: b.runner for name, b in built.items()}
    gen = torch.Generator().manual_seed(0)
    for bs in batch_sizes:
        x = torch.randn(bs, 3, crop, crop, generator=gen)
        # Warm up (Inductor recompiles for a new batch size), and estimate the cost of a round.
        per_round = 0.0
        for name, fn in runners.items():
            progress.step(f"warming up batch {bs}: {name}")
            fn(x)
            t0 = time.perf_counter()
            fn(x)
            per_round += time.perf_counter() - t0
        calls = 4 if bs == 1 else 1
        rounds = _rounds_for(per_round * (calls + 1), budget_s, 5 if bs == 1 else 3, 300)
        times = time_interleaved(runners, x, rounds=rounds, calls_per_round=calls, switch_warmup=1,
                                 progress=lambda d, t, bs=bs: progress.tick(f"timing batch {bs}:", d, t))
        for name, samples in times.items():
            stats = summarize(samples)
            results[name]["latency"][str(bs)] = stats
            results[name]["throughput"][str(bs)] = bs / (stats["p50_ms"] / 1e3)

    # Peak RSS during inference, at the largest batch, one path at a time.
    xb = torch.randn(max(batch_sizes), 3, crop, crop, generator=gen)
    for name, fn in runners.items():
        progress.step(f"memory at batch {xb.shape[0]}: {name}")
        with PeakRSS() as mem:
            fn(xb)
        results[name]["infer_peak_rss_mb"] = mem.peak_mb
        results[name]["infer_delta_rss_mb"] = mem.delta_mb

    # End to end: JPEG bytes -> top-5, for the ipex_resnet paths (peers have no preprocessing).
    small = list(images) if images else [synthetic_jpeg(seed=s) for s in range(4)]
    large = upscale_jpeg(small[0])
    e2e_reps = 2 if quick else 5
    for name, b in built.items():
        if b.classifier is None:
            continue
        progress.step(f"end to end (JPEG -> top-5): {name}")
        clf = b.classifier
        for label, imgs in (("photo", small), ("1920x1080", [large])):
            samples = []
            for _ in range(e2e_reps):
                for img in imgs:
                    t0 = time.perf_counter()
                    clf.predict([img], topk=5)
                    samples.append(time.perf_counter() - t0)
            results[name].setdefault("end_to_end", {})[label] = summarize(samples)
    progress.step("done")
    progress.close()
    tmp.cleanup()

    _add_ratios(results)
    vers = versions()
    doc = {
        "schema": REPORT_SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "model": model,
        "weights": "none (random init)",
        "cpu": cpu.to_dict(),
        "machine_key": machine_key(cpu, vers, threads),
        "platform": platform.platform(),
        "versions": vers,
        "threads": {**thread_settings(), "used": threads},
        "plan": auto_plan.to_dict(),
        "batch_sizes": list(batch_sizes),
        "quick": quick,
        "injected_slowdown": slow,
        "inputs": {"synthetic_tensor": f"randn N x 3 x {crop} x {crop}",
                   "jpeg": "given images" if images else "4 synthetic 500x375 JPEGs (bundled default)",
                   "large_jpeg": "1920x1080 JPEG upscaled from the first"},
        "reference": REFERENCE,
        "paths": results,
        "skipped": skipped,
        "targets": targets(results, batch_sizes),
    }
    return doc


def _best(results: Mapping[str, dict], kind: str | None, key: Callable[[dict], float | None], lowest: bool):
    cands = [(key(r), n) for n, r in results.items() if (kind is None or r["kind"] == kind) and key(r) is not None]
    if not cands:
        return None, None
    v, n = (min if lowest else max)(cands)
    return n, v


def _lat(r: dict, bs: int = 1) -> float | None:
    return r["latency"].get(str(bs), {}).get("p50_ms")


def _thr(r: dict, bs: int) -> float | None:
    return r["throughput"].get(str(bs))


def _add_ratios(results: dict[str, dict]) -> None:
    ref = results.get(REFERENCE)
    for r in results.values():
        sp: dict[str, dict] = {"vs_eager_fp32": {}, "vs_best_peer": {}}
        for bs in r["throughput"]:
            if ref and _thr(ref, int(bs)):
                sp["vs_eager_fp32"][bs] = _thr(r, int(bs)) / _thr(ref, int(bs))
            best_peer, v = _best(results, "peer", lambda q, bs=bs: _thr(q, int(bs)), lowest=False)
            if best_peer:
                sp["vs_best_peer"][bs] = _thr(r, int(bs)) / v
                sp.setdefault("best_peer", {})[bs] = best_peer
        r["speedup"] = sp


def targets(results: Mapping[str, dict], batch_sizes: Sequence[int]) -> dict:
    """Where the speed targets stand: best ipex_resnet path vs best peer (batch-1 latency within
    1.10x, largest-batch throughput at least 0.90x)."""
    out: dict[str, object] = {}
    ours, our_lat = _best(results, "ipex_resnet", _lat, lowest=True)
    peer, peer_lat = _best(results, "peer", _lat, lowest=True)
    if ours and peer:
        ratio = our_lat / peer_lat
        out["latency_b1"] = {"ours": ours, "ours_ms": our_lat, "peer": peer, "peer_ms": peer_lat,
                             "ratio": ratio, "target": "<= 1.10", "met": ratio <= 1.10}
    bmax = max(batch_sizes)
    if bmax > 1:
        ours, our_t = _best(results, "ipex_resnet", lambda r: _thr(r, bmax), lowest=False)
        peer, peer_t = _best(results, "peer", lambda r: _thr(r, bmax), lowest=False)
        if ours and peer:
            ratio = our_t / peer_t
            out[f"throughput_b{bmax}"] = {"ours": ours, "ours_img_s": our_t, "peer": peer, "peer_img_s": peer_t,
                                          "ratio": ratio, "target": ">= 0.90", "met": ratio >= 0.90}
    if not out:
        out["note"] = "no peer ran, so the targets could not be checked"
    return out


def format_table(doc: Mapping) -> str:
    bss = [b for b in doc["batch_sizes"] if b > 1]
    head = ["path", "p50 ms", "p90 ms", "p99 ms"] + [f"img/s b{b}" for b in bss]
    head += ["e2e ms", "e2e 1080p", "load RSS MB", "infer RSS MB", "x eager", "x peer"]
    rows = []
    for name, r in doc["paths"].items():
        lat = r["latency"].get("1", {})
        e2e = r.get("end_to_end", {})
        bref = str(max(doc["batch_sizes"]))
        rows.append([
            name + (" (peer)" if r["kind"] == "peer" else ""),
            f"{lat.get('p50_ms', math.nan):.1f}", f"{lat.get('p90_ms', math.nan):.1f}", f"{lat.get('p99_ms', math.nan):.1f}",
            *[f"{r['throughput'].get(str(b), math.nan):.1f}" for b in bss],
            f"{e2e['photo']['p50_ms']:.1f}" if "photo" in e2e else "-",
            f"{e2e['1920x1080']['p50_ms']:.1f}" if "1920x1080" in e2e else "-",
            f"{r['load_delta_rss_mb']:.0f}", f"{r.get('infer_delta_rss_mb', math.nan):.0f}",
            f"{r['speedup']['vs_eager_fp32'].get(bref, math.nan):.2f}",
            f"{r['speedup']['vs_best_peer'].get(bref, math.nan):.2f}" if r["speedup"]["vs_best_peer"] else "-",
        ])
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
    fmt = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
    lines = [fmt(head), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows]
    cpu = doc["cpu"]
    lines.insert(0, f"{doc['model']} on {cpu.get('model_name')} ({cpu.get('isa_level', '?')}), "
                    f"{doc['threads']['used']} threads, torch {doc['versions']['torch']}"
                    + (f", IPEX {doc['versions']['intel_extension_for_pytorch']}"
                       if doc["versions"].get("intel_extension_for_pytorch") else ""))
    lines.append(f"x eager / x peer: throughput at batch {max(doc['batch_sizes'])} relative to eager fp32 / "
                 "the best peer; RSS columns: MB added at peak (load; inference at the largest batch)")
    for key, t in doc["targets"].items():
        if key == "note":
            lines.append(f"targets: {t}")
        elif key == "latency_b1":
            lines.append(f"target batch-1 latency: {t['ours']} {t['ours_ms']:.1f} ms vs {t['peer']} "
                         f"{t['peer_ms']:.1f} ms = {t['ratio']:.2f}x (target <= 1.10x): {'met' if t['met'] else 'NOT met'}")
        else:
            lines.append(f"target {key}: {t['ours']} {t['ours_img_s']:.1f} img/s vs {t['peer']} "
                         f"{t['peer_img_s']:.1f} img/s = {t['ratio']:.2f}x (target >= 0.90x): "
                         f"{'met' if t['met'] else 'NOT met'}")
    for name, why in doc["skipped"].items():
        lines.append(f"skipped {name}: {why}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------

def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="resnet18", help="torchvision model name, random weights (default: resnet18)")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads for every path (default: the plan's)")
    p.add_argument("--batch-sizes", "--batch-size", dest="batch_sizes", default=None,
                   help="comma-separated batch sizes; 1 is always included (default: 1,8,32; --quick: 1,8)")
    p.add_argument("--backends", default=None, help="comma-separated: ipex,inductor,eager (default: all that run here)")
    p.add_argument("--precisions", default=None, help="comma-separated: fp32,bf16 (default: both; bf16 only if native)")
    p.add_argument("--peers", default=None,
                   help="comma-separated: onnxruntime,openvino, or 'none' (default: all installed)")
    p.add_argument("--emulated-bf16", action="store_true", help="also run bf16 where it would be emulated")
    p.add_argument("--images", default=None, help="directory of JPEGs for the end-to-end timing (default: synthetic)")
    p.add_argument("--budget", type=float, default=None,
                   help="seconds of timing per batch size, shared by all paths (default: 15; --quick: 4)")
    p.add_argument("--quick", action="store_true", help="short run: batch sizes 1,8 and a small timing budget")
    p.add_argument("--output", "-o", default=None,
                   help="report path (default: bench-report-<machine key>.json in the current directory)")
    p.add_argument("--no-progress", action="store_true", help="no progress display on stderr")


def main(args: argparse.Namespace) -> int:
    from . import peers as pr
    from .errors import ConfigError
    from .policy import BACKENDS, PRECISIONS

    try:
        backends = parse_list(args.backends, BACKENDS, "backend")
        precisions = parse_list(args.precisions, PRECISIONS, "precision")
        peer_arg = (args.peers or "").strip().lower()
        peers = [] if peer_arg == "none" else parse_list(args.peers, pr.PEERS, "peer")
        batch_sizes = parse_batch_sizes(args.batch_sizes, QUICK_BATCH_SIZES if args.quick else DEFAULT_BATCH_SIZES)
        if args.threads is not None and args.threads < 1:
            raise ConfigError(f"--threads must be at least 1, got {args.threads}")
        if args.budget is not None and args.budget <= 0:
            raise ConfigError(f"--budget must be positive, got {args.budget}")
        images = load_images(args.images) if args.images else None
        from .models import _check_name

        _check_name(args.model)
        if args.output:
            out_dir = Path(args.output).resolve().parent
            if not out_dir.is_dir():
                raise ConfigError(f"--output directory {str(out_dir)!r} does not exist")
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    progress = Progress(enabled=not args.no_progress)
    doc = run_report(model=args.model, threads=args.threads, batch_sizes=batch_sizes, backends=backends,
                     precisions=precisions, peers=peers, emulated_bf16=args.emulated_bf16, quick=args.quick,
                     images=images, budget_s=args.budget, progress=progress)
    out = Path(args.output) if args.output else Path(f"bench-report-{doc['machine_key']}.json")
    out.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    print(format_table(doc))
    print(f"report: {out}")
    return 0


__all__ = ["Built", "Finding", "GateResult", "PathSpec", "PeakRSS", "REFERENCE", "add_arguments", "build_path",
           "format_table", "gate", "inject_slowdown", "interleaved_ratio", "machine_key", "main", "matrix",
           "quantile", "run_report", "summarize", "synthetic_jpeg", "time_interleaved", "versions"]
