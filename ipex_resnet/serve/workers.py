"""``--workers N``: N server processes on one port, each pinned to its own physical cores.

The parent binds the socket, creates the ``prometheus_client`` multiprocess directory, and starts each
worker (``multiprocessing`` spawn: a fresh interpreter, no forked OpenMP state) with the socket and its
CPU set. The worker pins itself (``os.sched_setaffinity``) before any inference thread exists and runs
``threads = its cores``. A worker accepts on the shared socket only once its model is loaded and warmed
up, so while one (re)starts, the others take every connection. CPU sets are one logical CPU per physical core (SMT siblings add nothing to
GEMM-bound inference), and never span NUMA nodes when the worker count allows it -- what
``torch.backends.xeon.run_cpu`` and TorchServe's CPU launcher do. The parent forwards SIGTERM/SIGINT,
restarts a worker that dies, and removes the metrics directory at the end.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import time
from pathlib import Path

from ipex_resnet.errors import ConfigError

log = logging.getLogger("ipex_resnet.serve")

SYSFS_CPU = Path("/sys/devices/system/cpu")
SYSFS_NODE = Path("/sys/devices/system/node")


@dataclasses.dataclass(frozen=True)
class LogicalCPU:
    cpu: int
    core: tuple[int, int]  # (package, core id): SMT siblings share it
    node: int


def _parse_list(text: str) -> list[int]:
    out: list[int] = []
    for part in text.strip().split(","):
        if "-" in part:
            a, b = part.split("-")
            out.extend(range(int(a), int(b) + 1))
        elif part:
            out.append(int(part))
    return out


def read_topology(allowed: set[int] | None = None) -> list[LogicalCPU]:
    """The logical CPUs this process may run on, with their physical core and NUMA node (sysfs)."""
    allowed = allowed if allowed is not None else set(os.sched_getaffinity(0))
    node_of: dict[int, int] = {}
    for node_dir in sorted(SYSFS_NODE.glob("node[0-9]*")):
        try:
            for c in _parse_list((node_dir / "cpulist").read_text()):
                node_of[c] = int(node_dir.name[4:])
        except (OSError, ValueError):
            continue
    out = []
    for c in sorted(allowed):
        topo = SYSFS_CPU / f"cpu{c}" / "topology"
        try:
            core = (int((topo / "physical_package_id").read_text()), int((topo / "core_id").read_text()))
        except (OSError, ValueError):
            core = (0, c)  # no topology: count every logical CPU as a core
        out.append(LogicalCPU(c, core, node_of.get(c, 0)))
    return out


def physical_cores(topology: list[LogicalCPU]) -> dict[int, list[int]]:
    """NUMA node -> one logical CPU (the first sibling) per physical core."""
    seen: set[tuple[int, int]] = set()
    by_node: dict[int, list[int]] = {}
    for lc in sorted(topology, key=lambda x: x.cpu):
        if lc.core in seen:
            continue
        seen.add(lc.core)
        by_node.setdefault(lc.node, []).append(lc.cpu)
    return by_node


def assign_cpus(topology: list[LogicalCPU], workers: int) -> list[list[int]]:
    """Disjoint CPU sets, one per worker, of equal size (as far as cores allow), each within one NUMA
    node when the worker count is a multiple of the node count."""
    by_node = physical_cores(topology)
    total = sum(len(v) for v in by_node.values())
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    if workers > total:
        raise ConfigError(f"--workers {workers} needs a physical core per worker; this process may use {total}")
    nodes = [by_node[n] for n in sorted(by_node)]
    if workers < len(nodes):  # fewer workers than nodes: each takes a whole node, the rest stay unused
        return [list(nodes[i]) for i in range(workers)]
    if workers % len(nodes) == 0 and all(len(n) >= workers // len(nodes) for n in nodes):
        per_node = workers // len(nodes)
        return [chunk for n in nodes for chunk in _split(n, per_node)]
    return _split([c for n in nodes for c in n], workers)  # uneven: may straddle nodes


def _split(cpus: list[int], parts: int) -> list[list[int]]:
    size = len(cpus) // parts  # equal sizes; leftover cores stay idle rather than make one worker slower
    return [cpus[i * size : (i + 1) * size] for i in range(parts)]


def default_workers(topology: list[LogicalCPU], sockets: int = 1) -> tuple[int, str]:
    """What the plan decides. Up to 4 physical cores per NUMA node: one worker per node with all its cores
    (on so few cores one batching queue with intra-op threads serves as much as single-core workers, with
    a lower p99: docs/serve.md, workers table). More: workers of 4 cores, an equal number per node, since
    intra-op scaling of small batches flattens past a few cores (as TorchServe's launcher)."""
    by_node = physical_cores(topology)
    per_node = min(len(v) for v in by_node.values())
    if per_node <= 4:
        n = len(by_node)
        return n, (
            f"one worker per NUMA node ({n}) with all its {per_node} physical core(s): on this few cores one "
            "batching queue with intra-op threads does as well as single-core workers, with a lower p99"
        )
    n = max(1, per_node // 4) * len(by_node)
    return n, (
        f"workers of 4 physical cores each, {n // len(by_node)} per NUMA node ({len(by_node)} node(s), "
        f"{sockets} socket(s)): small intra-op thread counts scale best, and no worker crosses a node"
    )


# -- the supervisor ----------------------------------------------------------------------------------
def _worker_main(cfg_dict: dict, model: dict, cpus: list[int], sock: socket.socket, index: int) -> None:
    os.sched_setaffinity(0, cpus)
    os.environ["OMP_NUM_THREADS"] = str(model.get("threads") or len(cpus))
    from ipex_resnet.serve.process import run_one  # imports torch only now, pinned

    raise SystemExit(
        run_one(
            cfg_dict,
            model,
            sock,
            threads=model.get("threads") or len(cpus),
            label=f"worker {index} (pid {os.getpid()}, CPUs {cpus})",
            load_first=True,
        )
    )


def run_workers(
    cfg_dict: dict, model: dict, cpu_sets: list[list[int]], sock: socket.socket, stop_after_s: float
) -> int:
    """Start one worker per CPU set on ``sock``; return when they have all stopped."""
    metrics_dir = tempfile.mkdtemp(prefix="ipex-resnet-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # inherited by the workers
    ctx = multiprocessing.get_context("spawn")
    stopping = {"sig": None}
    procs: dict[int, multiprocessing.process.BaseProcess] = {}

    def start(i: int):
        p = ctx.Process(
            target=_worker_main,
            args=(cfg_dict, model, cpu_sets[i], sock, i),
            name=f"ipex-resnet-worker-{i}",
            daemon=False,
        )
        p.start()
        procs[i] = p

    def on_signal(sig, frame):
        stopping["sig"] = sig
        for p in procs.values():  # a second SIGINT (Ctrl-C twice) makes uvicorn stop without waiting
            if p.pid and p.is_alive():
                os.kill(p.pid, sig)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    rc = 0
    try:
        for i in range(len(cpu_sets)):
            start(i)
        while stopping["sig"] is None:
            time.sleep(0.2)
            for i, p in list(procs.items()):
                if p.is_alive() or stopping["sig"] is not None:
                    continue
                _mark_dead(p.pid)
                if p.exitcode == 2:  # the model could not be loaded: restarting will not help
                    log.error("worker %d could not start (exit status 2); stopping", i)
                    rc = 2
                    on_signal(signal.SIGTERM, None)
                    break
                log.error("worker %d (pid %s) died with exit status %s; restarting it", i, p.pid, p.exitcode)
                start(i)
        sock.close()  # the workers hold their own copies; the port closes when the last one stops
        if _stop_workers(procs, stop_after_s) and rc == 0:
            rc = 1
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        for p in procs.values():
            if p.is_alive():
                p.kill()
        shutil.rmtree(metrics_dir, ignore_errors=True)
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return rc


def _stop_workers(procs: dict[int, multiprocessing.process.BaseProcess], stop_after_s: float) -> bool:
    """Wait for the stopping workers (``stop_after_s`` in all), kill any still running; True when one
    ended with a failure status."""
    deadline = time.monotonic() + stop_after_s
    for p in procs.values():
        p.join(max(0.0, deadline - time.monotonic()))
    for p in procs.values():
        if p.is_alive():
            log.error("worker pid %s did not stop in time; killing it", p.pid)
            p.kill()
            p.join(5)
        _mark_dead(p.pid)
    return any(p.exitcode not in (0, None) for p in procs.values())


def _mark_dead(pid: int | None) -> None:
    if pid is None:
        return
    try:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
    except Exception:
        pass
