"""MLCommons' load generator (``mlperf_loadgen``) driving a system under test: one LoadGen run of a
scenario, its summary parsed, and the Server scenario's search for the highest query rate whose p99
latency stays under a bound. What serves the queries is a :class:`QueuedSUT` (a path in this
process, micro-batched from a queue) or an :class:`HttpSUT` (an HTTP endpoint on loopback)."""

from __future__ import annotations

import dataclasses
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ipex_resnet.errors import BackendUnavailable, ConfigError

LABEL = "MLPerf-style, not an official MLPerf result"
HINT = "pip install mlcommons-loadgen (or pip install 'ipex_resnet[loadgen]')"
SCENARIOS = {"single-stream": "SingleStream", "offline": "Offline", "server": "Server"}


def lg():
    """The ``mlperf_loadgen`` module, or one clear line saying how to install it."""
    try:
        import mlperf_loadgen
    except ImportError:
        raise BackendUnavailable(f"the MLPerf-style scenarios need MLCommons' LoadGen: {HINT}") from None
    return mlperf_loadgen


@dataclass(frozen=True)
class RunSettings:
    """One LoadGen run: how long, over how many distinct samples, and the rates LoadGen plans with."""

    duration_s: float
    samples: int
    expected_qps: float = 100.0  # Offline: sizes its single query (qps x duration x 1.1)
    target_qps: float = 10.0  # Server: the Poisson arrival rate
    p99_ms: float = 100.0  # Server: the latency bound
    min_queries: int = 1  # Server: at least this many samples per run (p99 rests on them)

    def test_settings(self, scenario: str):
        m = lg()
        ts = m.TestSettings()
        ts.scenario = getattr(m.TestScenario, SCENARIOS[scenario])
        ts.mode = m.TestMode.PerformanceOnly
        ts.min_duration_ms = int(self.duration_s * 1000)
        ts.max_duration_ms = int(self.duration_s * 1000 * 4 + 10_000)
        ts.min_query_count = max(1, int(self.min_queries)) if scenario == "server" else 1
        ts.offline_expected_qps = self.expected_qps
        ts.single_stream_expected_latency_ns = int(1e9 / max(self.expected_qps, 1e-3))
        ts.server_target_qps = self.target_qps
        ts.server_target_latency_ns = int(self.p99_ms * 1e6)
        ts.server_target_latency_percentile = 0.99
        return ts


class _Completions:
    """Counts what the SUT answered and what failed (a failed sample makes the run invalid: nothing
    accepted may be lost)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.done = self.failed = 0
        self.first_error: str | None = None

    def complete(self, samples, error: str | None = None) -> None:
        m = lg()
        with self.lock:
            self.done += len(samples)
            if error:
                self.failed += len(samples)
                self.first_error = self.first_error or error
        m.QuerySamplesComplete([m.QuerySampleResponse(s.id, 0, 0) for s in samples])


class QueuedSUT:
    """Samples wait in a queue; one thread takes up to ``max_batch`` of those waiting and runs
    ``run_batch(items)`` on them (no waiting for company: a lone sample runs alone). ``items`` are the
    samples' indices, or with ``prepare`` what ``prepare(index)`` returned: run on ``workers`` threads as
    the samples arrive (a server's decoding), so a sample joins the queue once it is prepared."""

    def __init__(
        self,
        run_batch: Callable[[list], object],
        max_batch: int,
        *,
        prepare: Callable[[int], object] | None = None,
        workers: int = 2,
    ):
        import concurrent.futures

        self.run_batch, self.max_batch, self.prepare = run_batch, max(1, max_batch), prepare
        self.q: queue.SimpleQueue = queue.SimpleQueue()
        self.stats = _Completions()
        self.pool = (
            concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="loadgen-prepare")
            if prepare is not None
            else None
        )
        self.thread = threading.Thread(target=self._loop, daemon=True, name="loadgen-sut")
        self.thread.start()

    def issue(self, samples) -> None:
        for s in samples:
            if self.pool is None:
                self.q.put((s, s.index))
            else:
                self.pool.submit(self._prepare, s)

    def _prepare(self, sample) -> None:
        assert self.prepare is not None  # only submitted with a pool, made for prepare
        try:
            self.q.put((sample, self.prepare(sample.index)))
        except Exception as exc:
            self.stats.complete([sample], f"{type(exc).__name__}: {exc}")

    def flush(self) -> None:
        pass

    def _loop(self) -> None:
        while True:
            first = self.q.get()
            if first is None:
                return
            items = [first]
            while len(items) < self.max_batch:
                try:
                    nxt = self.q.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self.q.put(None)
                    break
                items.append(nxt)
            samples = [s for s, _ in items]
            try:
                self.run_batch([x for _, x in items])
                self.stats.complete(samples)
            except Exception as exc:
                self.stats.complete(samples, f"{type(exc).__name__}: {exc}")

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)
        self.q.put(None)
        self.thread.join(30)


class HttpSUT:
    """Each sample is one POST of its bytes to ``url`` (``request(index) -> (content, headers)``),
    sent from an asyncio loop on a thread; at most ``concurrency`` requests are in flight. An answer
    that is not 200 with a body ``check`` accepts counts as a failure.

    The client is aiohttp's (its HTTP parser is C): on this machine's 2 cores it costs about 0.5-0.8 ms
    of CPU per request against httpx's 1.5, CPU the server under test would otherwise lose."""

    def __init__(
        self,
        url: str,
        request: Callable[[int], tuple[bytes, dict]],
        *,
        concurrency: int = 256,
        check: Callable[[bytes], bool] = lambda body: True,
        timeout_s: float = 60.0,
    ):
        import asyncio

        import aiohttp

        self.url, self.request, self.check = url, request, check
        self.stats = _Completions()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="loadgen-http")
        self.thread.start()

        async def setup():
            self.sem = asyncio.Semaphore(concurrency)
            self.client = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=concurrency), timeout=aiohttp.ClientTimeout(total=timeout_s)
            )

        asyncio.run_coroutine_threadsafe(setup(), self.loop).result()

    async def _post(self, index: int) -> tuple[int, bytes]:
        content, headers = self.request(index)
        async with self.client.post(self.url, data=content, headers=headers) as r:
            return r.status, await r.read()

    async def _one(self, sample) -> None:
        error = None
        try:
            async with self.sem:
                status, body = await self._post(sample.index)
            if status != 200 or not self.check(body):
                error = f"HTTP {status}: {body[:200].decode(errors='replace')}"
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        self.stats.complete([sample], error)

    def probe(self, seconds: float, samples: int, concurrency: int) -> float:
        """Answers per second with ``concurrency`` requests kept in flight for about ``seconds``: not a
        LoadGen run, the upper end of the Server search. A failed answer raises (the endpoint is broken)."""
        import asyncio

        async def go() -> float:
            loop = asyncio.get_running_loop()
            start = loop.time()
            end, done = start + seconds, [0]

            async def worker(k: int) -> None:
                i = k
                while loop.time() < end:
                    status, body = await self._post(i % samples)
                    if status != 200:
                        raise RuntimeError(f"{self.url} answered HTTP {status}: {body[:200].decode(errors='replace')}")
                    done[0] += 1
                    i += concurrency

            await asyncio.gather(*(worker(k) for k in range(concurrency)))
            return done[0] / (loop.time() - start)

        return asyncio.run_coroutine_threadsafe(go(), self.loop).result()

    def issue(self, samples) -> None:
        import asyncio

        for s in samples:
            asyncio.run_coroutine_threadsafe(self._one(s), self.loop)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        import asyncio

        asyncio.run_coroutine_threadsafe(self.client.close(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)


def parse_summary(text: str) -> dict:
    """``mlperf_log_summary.txt`` -> validity, throughput and latency percentiles in ms."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() and key.strip() not in fields:
            fields[key.strip()] = value.strip()

    def num(key: str, scale: float = 1.0) -> float | None:
        try:
            return float(fields[key]) * scale
        except (KeyError, ValueError):
            return None

    out = {
        "scenario": fields.get("Scenario"),
        "valid": fields.get("Result is") == "VALID",
        "latency_bound_met": (
            fields["Performance constraints satisfied"].startswith("Yes")
            if "Performance constraints satisfied" in fields
            else None
        ),
        "samples_per_s": num("Samples per second")
        or num("Completed samples per second")
        or num("QPS w/ loadgen overhead"),
        "scheduled_qps": num("Scheduled samples per second"),
        "mean_ms": num("Mean latency (ns)", 1e-6),
    }
    for q in ("50.00", "90.00", "99.00"):
        out[f"p{q[:2]}_ms"] = num(f"{q} percentile latency (ns)", 1e-6)
    return out


def run(sut, scenario: str, rs: RunSettings, outdir: str | Path) -> dict:
    """One LoadGen run of ``scenario`` against ``sut`` (its logs in ``outdir``), summarized. A run in
    which the SUT failed any sample is marked invalid, with the first error."""
    m = lg()
    if scenario not in SCENARIOS:
        raise ConfigError(f"unknown scenario {scenario!r}: choose from {', '.join(SCENARIOS)}")
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    log = m.LogSettings()
    log.log_output.outdir = str(outdir)
    log.log_output.copy_summary_to_stdout = False
    log.enable_trace = False
    handle = m.ConstructSUT(sut.issue, sut.flush)
    qsl = m.ConstructQSL(rs.samples, rs.samples, lambda s: None, lambda s: None)
    failed_before = sut.stats.failed
    try:
        m.StartTestWithLogSettings(handle, qsl, rs.test_settings(scenario), log)
    finally:
        m.DestroyQSL(qsl)
        m.DestroySUT(handle)
    result = parse_summary((outdir / "mlperf_log_summary.txt").read_text())
    failed = sut.stats.failed - failed_before
    if failed:
        result.update(valid=False, latency_bound_met=False, failed_samples=failed, error=sut.stats.first_error)
    result["logs"] = str(outdir)
    return result


def server_search(
    sut,
    rs: RunSettings,
    outdir: str | Path,
    upper_qps: float,
    *,
    resolution: float = 0.10,
    max_runs: int = 10,
    observe: Callable[[], Callable[[], dict]] | None = None,
) -> dict:
    """The highest Server target QPS whose p99 stays under ``rs.p99_ms`` (LoadGen's own latency
    constraint): runs until a passing and a failing rate lie within ``resolution`` of each other
    (geometric bisection; from 0.7x ``upper_qps``, going up while every rate passes), or ``max_runs``.
    ``bracket`` holds the two rates; ``resolved`` says whether they closed in; every run is in ``tried``.
    ``observe()``, called before each run, returns what to call after it: its dict lands in the run's
    ``observed`` (the service's own histograms for that step)."""
    lo, hi = 0.0, None
    tried: list[dict] = []
    best: dict | None = None
    qps = upper_qps * 0.7
    while len(tried) < max_runs:
        after = observe() if observe is not None else None
        r = run(sut, "server", dataclasses.replace(rs, target_qps=qps), Path(outdir) / f"qps-{qps:.1f}")
        r["target_qps"] = qps
        if after is not None:
            r["observed"] = after()
        tried.append(r)
        if r["latency_bound_met"]:
            lo, best = qps, r
        else:
            hi = qps
        if lo > 0 and hi is not None and hi / lo <= 1 + resolution:
            break
        qps = (upper_qps if qps < upper_qps else qps * 1.5) if hi is None else hi / 2 if lo == 0 else (lo * hi) ** 0.5
    return {
        "capacity_qps": lo,
        "p99_ms_bound": rs.p99_ms,
        "at_capacity": best,
        "tried": tried,
        "bracket": [lo, hi],
        "resolved": lo > 0 and hi is not None and hi / lo <= 1 + resolution,
        "resolution": resolution,
        "label": LABEL,
    }


__all__ = [
    "HINT",
    "HttpSUT",
    "LABEL",
    "QueuedSUT",
    "RunSettings",
    "SCENARIOS",
    "lg",
    "parse_summary",
    "run",
    "server_search",
]
