"""Bounded load test for ``ipex-resnet serve``: latency, throughput, and what hostile or excess load does.

    python tools/loadtest.py --images ../shared/data/imagenet-samples --backend ipex                  # batching
    python tools/loadtest.py --images DIR --backend ipex --scenario attack     # 80 slow-body connections
    python tools/loadtest.py --images DIR --backend ipex --scenario overload   # 2x the admission limit
    python tools/loadtest.py --images DIR --backend ipex --scenario workers    # --workers 2 vs 1

Scenarios (each starts its own servers on free loopback ports and stops them):

- ``batching`` (default): servers with batching on and off (``--batch``), each concurrency level run
  against each server back to back (so both see the same background load). With ``--url`` it measures
  an already running server instead.
- ``attack``: one normal client sends requests back to back, first alone, then while ``--attackers``
  connections each declare a 1 MB body and trickle a byte every 0.5 s (reconnecting when cut off).
- ``overload``: ``2 x --max-queue`` clients send ``--requests`` requests without pause; counts 503s
  (with Retry-After), timeouts and 5xx, and the server's RSS before and after.
- ``workers``: ``--workers 2`` (1 core each) against ``--workers 1 --threads 2`` at ``--clients``,
  alternating for ``--rounds`` rounds.

Every level is bounded by a request count and a time limit, so the script always stops by itself.
Loopback only: it refuses non-local URLs. Prints Markdown tables; ``--json`` writes the rows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    i = min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))
    return values[i]


def load_images(folder: str, limit: int) -> list[bytes]:
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".jpeg", ".jpg", ".png"))[:limit]
    if not files:
        raise SystemExit(f"error: no .jpg/.jpeg/.png images in {folder}")
    return [p.read_bytes() for p in files]


async def run_level(
    url: str, images: list[bytes], clients: int, requests: int, max_seconds: float, timeout_s: float = 60.0
) -> dict:
    import httpx

    latencies: list[float] = []
    statuses: dict[str, int] = {}
    counter = iter(range(requests))
    deadline = time.monotonic() + max_seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client(c: httpx.AsyncClient) -> None:
        for i in counter:
            if time.monotonic() > deadline:
                return
            body = images[i % len(images)]
            t0 = time.perf_counter()
            try:
                r = await c.post(url + "/v1/classify?topk=5", content=body, headers={"content-type": "image/jpeg"})
                key = str(r.status_code)
            except httpx.HTTPError as exc:
                key = type(exc).__name__
            dt = time.perf_counter() - t0
            statuses[key] = statuses.get(key, 0) + 1
            if key == "200":
                latencies.append(dt)

    async with httpx.AsyncClient(timeout=timeout_s, limits=limits) as c:
        start = time.perf_counter()
        await asyncio.gather(*(client(c) for _ in range(clients)))
        elapsed = time.perf_counter() - start
    ok = statuses.get("200", 0)
    return {
        "clients": clients,
        "requests": sum(statuses.values()),
        "ok": ok,
        "statuses": statuses,
        "elapsed_s": elapsed,
        "throughput": ok / elapsed if elapsed else 0.0,
        "p50_ms": 1000 * _percentile(latencies, 50),
        "p99_ms": 1000 * _percentile(latencies, 99),
        "mean_ms": 1000 * statistics.fmean(latencies) if latencies else float("nan"),
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(url: str, proc: subprocess.Popen, timeout_s: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"error: the server exited with {proc.returncode} before it was ready")
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"error: the server was not ready within {timeout_s:g} s")


def start_server(
    args: argparse.Namespace, max_batch: int, extra: list[str] | None = None, max_queue: int | None = None
) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    cmd = [
        sys.executable,
        "-m",
        "ipex_resnet.cli",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--model",
        args.model,
        "--weights",
        args.weights,
        "--backend",
        args.backend,
        "--precision",
        args.precision,
        "--max-batch",
        str(max_batch),
        "--max-wait-ms",
        str(args.max_wait_ms),
        "--max-queue",
        str(max_queue or max(args.clients) * 2),
        "--no-tune",
        "--log-level",
        "warning",
    ]
    extra = list(extra or [])
    if args.threads and "--threads" not in extra:
        cmd += ["--threads", str(args.threads)]
    if "--workers" not in extra:
        extra += ["--workers", str(args.workers)] if args.workers else []
    cmd += extra
    proc = subprocess.Popen(cmd)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, proc, args.ready_timeout)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc, url


def stop_server(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _server_processes(pid: int):
    import psutil

    p = psutil.Process(pid)
    return [p] + [c for c in p.children(recursive=True) if "resource_tracker" not in " ".join(c.cmdline())]


def _cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds of the server (all its processes and threads), when psutil is there."""
    if pid is None:
        return None
    try:
        return sum(t.user + t.system for t in (p.cpu_times() for p in _server_processes(pid)))
    except Exception:
        return None


def _rss_bytes(pid: int) -> int:
    return sum(p.memory_info().rss for p in _server_processes(pid))


def measure(servers: list[tuple[str, str, int | None]], images: list[bytes], args: argparse.Namespace) -> list[dict]:
    """Run every level against every (label, url); levels outermost so that configurations measured
    back to back share the same background load."""
    rows = []
    for _, url, _ in servers:  # warm-up: allocator, thread pools, connections
        asyncio.run(run_level(url, images, min(8, max(args.clients)), 16, 30))
    for clients in args.clients:
        n = max(args.requests, clients * 4)
        for label, url, pid in servers:
            cpu0 = _cpu_seconds(pid)
            row = asyncio.run(run_level(url, images, clients, n, args.max_seconds))
            cpu1 = _cpu_seconds(pid)
            row["config"] = label
            # server CPU time per image: far less sensitive to other load on a shared machine than img/s
            row["cpu_ms_per_image"] = (
                1000 * (cpu1 - cpu0) / row["ok"] if cpu0 is not None and cpu1 is not None and row["ok"] else None
            )
            rows.append(row)
            print(
                f"  {label:<14} {clients:>3} clients: {row['throughput']:6.1f} img/s  p50 {row['p50_ms']:7.1f} ms  "
                f"p99 {row['p99_ms']:7.1f} ms  cpu/img {row['cpu_ms_per_image'] or float('nan'):6.1f} ms  "
                f"statuses {row['statuses']}",
                file=sys.stderr,
                flush=True,
            )
    order = {label: i for i, (label, _, _) in enumerate(servers)}
    return sorted(rows, key=lambda r: order[r["config"]])


def table(rows: list[dict]) -> str:
    out = [
        "| batching | clients | requests | ok | throughput (img/s) | p50 (ms) | p99 (ms) | server CPU (ms/img) "
        "| other statuses |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        other = ", ".join(f"{k}: {v}" for k, v in sorted(r["statuses"].items()) if k != "200") or "-"
        out.append(
            f"| {r['config']} | {r['clients']} | {r['requests']} | {r['ok']} | {r['throughput']:.1f} | "
            f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
            f"{'-' if r.get('cpu_ms_per_image') is None else format(r['cpu_ms_per_image'], '.1f')} | {other} |"
        )
    return "\n".join(out)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python tools/loadtest.py", description=__doc__.splitlines()[0])
    p.add_argument("--images", required=True, help="folder of .jpg/.png images to send")
    p.add_argument("--num-images", type=int, default=64, help="how many of them to cycle through (default: 64)")
    p.add_argument("--url", default=None, help="measure this running server (loopback) instead of starting ones")
    p.add_argument(
        "--clients",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[1, 4, 16, 64],
        help="comma-separated concurrency levels (default: 1,4,16,64)",
    )
    p.add_argument("--requests", type=int, default=160, help="requests per level, at least 4 per client (default: 160)")
    p.add_argument("--max-seconds", type=float, default=60.0, help="time cap per level (default: 60)")
    p.add_argument(
        "--batch",
        default="16,1",
        help="max batch sizes of the servers to start, e.g. '16,1' = batching on, then off (default)",
    )
    p.add_argument("--max-wait-ms", type=float, default=5.0)
    p.add_argument("--model", default="resnet18")
    p.add_argument("--weights", default="none", help="weights for the started servers (default: none)")
    p.add_argument("--backend", default="ipex")
    p.add_argument("--precision", default="auto")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--ready-timeout", type=float, default=300.0)
    p.add_argument("--workers", type=int, default=None, help="--workers for the started servers (default: plan)")
    p.add_argument("--scenario", choices=("batching", "attack", "overload", "workers"), default="batching")
    p.add_argument("--attackers", type=int, default=80, help="attack: slow-body connections (default: 80)")
    p.add_argument("--seconds", type=float, default=20.0, help="attack: seconds per phase (default: 20)")
    p.add_argument("--max-queue", type=int, default=16, help="overload: the server's --max-queue (default: 16)")
    p.add_argument("--rounds", type=int, default=2, help="workers: alternating rounds (default: 2)")
    p.add_argument("--json", default=None, help="also write the rows to this JSON file")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    images = load_images(args.images, args.num_images)
    if args.scenario != "batching":
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from loadtest_scenarios import SCENARIOS  # next to this file

        rows = SCENARIOS[args.scenario](args, images, sys.modules[__name__])
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=2))
        return 0
    rows: list[dict] = []
    if args.url:
        host = urllib.parse.urlsplit(args.url).hostname
        if host not in LOCAL_HOSTS:
            print(f"error: {args.url} is not a loopback address; this tool only loads local servers", file=sys.stderr)
            return 2
        rows = measure([("server", args.url.rstrip("/"), None)], images, args)
    else:
        procs, servers = [], []
        try:
            for max_batch in (int(b) for b in args.batch.split(",")):
                label = f"on (max {max_batch})" if max_batch > 1 else "off (max 1)"
                print(
                    f"starting a server: backend={args.backend}, precision={args.precision}, max_batch={max_batch}",
                    file=sys.stderr,
                    flush=True,
                )
                proc, url = start_server(args, max_batch)
                procs.append(proc)
                servers.append((label, url, proc.pid))
            rows = measure(servers, images, args)
        finally:
            for proc in procs:
                stop_server(proc)
    print(
        f"\nmodel {args.model}, backend {args.backend}, precision {args.precision}, "
        f"{os.cpu_count()} CPUs, {len(images)} distinct JPEGs, 1 image per request\n"
    )
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
