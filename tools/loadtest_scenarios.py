"""The attack, overload and workers scenarios of tools/loadtest.py (see its docstring)."""

from __future__ import annotations

import asyncio
import statistics
import sys
import time

SLOW_HEAD = (
    b"POST /v1/classify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\nContent-Length: 1000000\r\n\r\n"
)


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))]


async def _normal_client(url: str, images: list[bytes], seconds: float, timeout_s: float = 30.0) -> dict:
    """One client, requests back to back for ``seconds``."""
    import httpx

    lat, statuses = [], {}
    end = time.monotonic() + seconds
    i = 0
    async with httpx.AsyncClient(timeout=timeout_s) as c:
        while time.monotonic() < end:
            t0 = time.perf_counter()
            try:
                r = await c.post(
                    url + "/v1/classify", content=images[i % len(images)], headers={"content-type": "image/jpeg"}
                )
                key = str(r.status_code)
            except httpx.HTTPError as exc:
                key = type(exc).__name__
            statuses[key] = statuses.get(key, 0) + 1
            if key == "200":
                lat.append(time.perf_counter() - t0)
            i += 1
    n = sum(statuses.values())
    return {
        "requests": n,
        "ok": statuses.get("200", 0),
        "statuses": statuses,
        "success": statuses.get("200", 0) / n if n else float("nan"),
        "p50_ms": 1000 * _pct(lat, 50),
        "p99_ms": 1000 * _pct(lat, 99),
    }


async def _trickler(host: str, port: int, stop: asyncio.Event, seen: dict) -> None:
    """Declare a 1 MB body, send a byte every 0.5 s; when cut off, note the answer and reconnect."""
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            seen["connect_errors"] = seen.get("connect_errors", 0) + 1
            await asyncio.sleep(0.5)
            continue
        try:
            writer.write(SLOW_HEAD)
            while not stop.is_set():
                writer.write(b"\0")
                await writer.drain()
                try:
                    data = await asyncio.wait_for(reader.read(4096), 0.5)
                except asyncio.TimeoutError:
                    continue
                key = data.split(b" ", 2)[1].decode() if data.startswith(b"HTTP/") else "closed"
                seen[key] = seen.get(key, 0) + 1
                break
        except OSError:
            seen["reset"] = seen.get("reset", 0) + 1
        finally:
            writer.close()


async def _attack(url: str, images: list[bytes], attackers: int, seconds: float) -> tuple[dict, dict]:
    import urllib.parse

    u = urllib.parse.urlsplit(url)
    stop = asyncio.Event()
    seen: dict = {}
    tasks = [asyncio.create_task(_trickler(u.hostname, u.port, stop, seen)) for _ in range(attackers)]
    await asyncio.sleep(2.0)  # let them all connect and start trickling
    row = await _normal_client(url, images, seconds)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    return row, seen


def attack(args, images, lt) -> list[dict]:
    proc, url = lt.start_server(args, 16, max_queue=64)
    try:
        asyncio.run(_normal_client(url, images, 3))  # warm-up
        base = asyncio.run(_normal_client(url, images, args.seconds))
        attacked, seen = asyncio.run(_attack(url, images, args.attackers, args.seconds))
    finally:
        lt.stop_server(proc)
    rows = [
        {"phase": "alone", **base},
        {"phase": f"{args.attackers} slow-body connections", **attacked, "attackers_saw": seen},
    ]
    print(
        "\n| phase | normal requests | ok | success | p50 (ms) | p99 (ms) | p99 / unattacked p99 | slow senders got |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        ratio = r["p99_ms"] / base["p99_ms"] if base["p99_ms"] else float("nan")
        got = ", ".join(f"{k}: {v}" for k, v in sorted(r.get("attackers_saw", {}).items())) or "-"
        print(
            f"| {r['phase']} | {r['requests']} | {r['ok']} | {100 * r['success']:.1f}% | {r['p50_ms']:.1f} | "
            f"{r['p99_ms']:.1f} | {ratio:.2f} | {got} |"
        )
    return rows


async def _flood(url: str, images: list[bytes], clients: int, total: int, timeout_s: float = 30.0) -> dict:
    import httpx

    statuses: dict = {}
    retry_after = {"with": 0, "without": 0}
    counter = iter(range(total))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client(c):
        for i in counter:
            try:
                r = await c.post(
                    url + "/v1/classify", content=images[i % len(images)], headers={"content-type": "image/jpeg"}
                )
                key = str(r.status_code)
                if r.status_code == 503:
                    retry_after["with" if r.headers.get("retry-after") else "without"] += 1
            except httpx.TimeoutException:
                key = "timeout"
            except httpx.HTTPError as exc:
                key = type(exc).__name__
            statuses[key] = statuses.get(key, 0) + 1

    t0 = time.perf_counter()
    async with httpx.AsyncClient(timeout=timeout_s, limits=limits) as c:
        await asyncio.gather(*(client(c) for _ in range(clients)))
    return {"statuses": statuses, "retry_after": retry_after, "elapsed_s": time.perf_counter() - t0}


def _rss_by_process(lt, pid: int) -> dict[int, int]:
    """Each server process's RSS once idle: the median of 5 samples over 2.5 s, after 2 s of quiet."""
    time.sleep(2.0)
    samples = []
    for _ in range(5):
        samples.append({p.pid: p.memory_info().rss for p in lt._server_processes(pid)})
        time.sleep(0.5)
    return {p: int(statistics.median(s.get(p, 0) for s in samples)) for p in samples[0]}


def _workers_of(url: str) -> int:
    import httpx

    for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
        if line.startswith("ipex_resnet_workers "):
            return int(float(line.split()[1]))
    return 1


def overload(args, images, lt) -> list[dict]:
    proc, url = lt.start_server(args, 16, max_queue=args.max_queue)
    try:
        clients = 2 * args.max_queue * _workers_of(url)  # twice what the server admits at once
        asyncio.run(_flood(url, images, clients, 1000))  # warm-up: allocator, pools, connections, batch shapes
        before = _rss_by_process(lt, proc.pid)
        res = asyncio.run(_flood(url, images, clients, args.requests))
        after = _rss_by_process(lt, proc.pid)
        rss0, rss1 = sum(before.values()), sum(after.values())
        for pid in before:
            print(f"  pid {pid}: RSS {before[pid] / 2**20:.1f} -> {after.get(pid, 0) / 2**20:.1f} MB", file=sys.stderr)
    finally:
        lt.stop_server(proc)
    st = res["statuses"]
    fivexx = sum(v for k, v in st.items() if k.isdigit() and k.startswith("5") and k != "503")
    row = {
        "clients": clients,
        "max_queue": args.max_queue,
        "requests": sum(st.values()),
        **res,
        "ok": st.get("200", 0),
        "503": st.get("503", 0),
        "timeouts": st.get("timeout", 0),
        "other_5xx": fivexx,
        "rss_before_mb": rss0 / 2**20,
        "rss_after_mb": rss1 / 2**20,
        "rss_growth_mb": (rss1 - rss0) / 2**20,
    }
    print(
        "\n| clients | --max-queue | requests | 200 | 503 (with Retry-After) | timeouts | other 5xx | other | "
        "RSS before (MB) | RSS growth (MB) | seconds |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|")
    other = (
        ", ".join(
            f"{k}: {v}"
            for k, v in st.items()
            if k not in ("200", "503", "timeout") and not (k.isdigit() and k.startswith("5"))
        )
        or "-"
    )
    print(
        f"| {clients} | {args.max_queue} | {row['requests']} | {row['ok']} | {row['503']} "
        f"({res['retry_after']['with']}) | {row['timeouts']} | {fivexx} | {other} | {row['rss_before_mb']:.0f} | "
        f"{row['rss_growth_mb']:+.1f} | {res['elapsed_s']:.0f} |"
    )
    return [row]


def workers(args, images, lt) -> list[dict]:
    clients = max(args.clients)
    configs = [
        ("--workers 2 (1 core each)", ["--workers", "2"]),
        ("--workers 1 (2 threads)", ["--workers", "1", "--threads", "2"]),
    ]
    servers = []
    try:
        for label, extra in configs:
            print(f"starting: {label}", file=sys.stderr, flush=True)
            proc, url = lt.start_server(args, 16, extra=extra, max_queue=clients * 2)
            servers.append((label, url, proc))
        for _, url, _ in servers:
            asyncio.run(lt.run_level(url, images, clients, clients * 4, 60))  # warm-up
        rows = []
        for r in range(args.rounds):
            for label, url, proc in servers:
                cpu0 = lt._cpu_seconds(proc.pid)
                row = asyncio.run(lt.run_level(url, images, clients, max(args.requests, clients * 4), args.max_seconds))
                cpu1 = lt._cpu_seconds(proc.pid)
                row.update(config=label, round=r + 1, cpu_ms_per_image=1000 * (cpu1 - cpu0) / max(1, row["ok"]))
                rows.append(row)
                print(
                    f"  {label}: {row['throughput']:.1f} img/s, p99 {row['p99_ms']:.0f} ms, {row['statuses']}",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        for _, _, proc in servers:
            lt.stop_server(proc)
    print(
        "\n| config | clients | round | requests | ok | throughput (img/s) | p50 (ms) | p99 (ms) "
        "| server CPU (ms/img) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['config']} | {clients} | {row['round']} | {row['requests']} | {row['ok']} | "
            f"{row['throughput']:.1f} | {row['p50_ms']:.0f} | {row['p99_ms']:.0f} | {row['cpu_ms_per_image']:.1f} |"
        )
    for label, _, _ in servers:
        mine = [r for r in rows if r["config"] == label]
        print(
            f"median {label}: {statistics.median(r['throughput'] for r in mine):.1f} img/s, "
            f"p99 {statistics.median(r['p99_ms'] for r in mine):.0f} ms"
        )
    return rows


SCENARIOS = {"attack": attack, "overload": overload, "workers": workers}
