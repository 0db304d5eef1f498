"""Memory: peak resident set size of a block of this process, or of a child process."""

from __future__ import annotations

import threading
import time


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


def process_peak_mb() -> float | None:
    """This process's peak RSS so far (the kernel's high-water mark), in MiB."""
    hwm = _read_hwm_mb()
    if hwm is not None:
        return hwm
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    except (ImportError, OSError):
        return None


class PeakRSS:
    """Peak resident memory inside a ``with`` block, in MiB.

    Exact on Linux (resets the kernel's high-water mark, reads it back); elsewhere a psutil sampling
    thread every 2 ms. ``before_mb`` is RSS on entry, ``delta_mb`` what the block added at its peak.
    """

    def __init__(self):
        self.before_mb = self.peak_mb = 0.0
        self._thread = None
        self._stop = False
        self._exact = False

    @property
    def delta_mb(self) -> float:
        return max(0.0, self.peak_mb - self.before_mb)

    def __enter__(self) -> PeakRSS:
        self.before_mb = rss_mb()
        self._exact = _reset_hwm() and _read_hwm_mb() is not None
        if not self._exact:
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


def _hwm_of(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    try:
        import psutil

        return psutil.Process(pid).memory_info().rss / 2**20
    except Exception:
        return None


class ChildPeakRSS:
    """Peak RSS of a running child process, in MiB: its kernel high-water mark (``VmHWM``, which counts
    only the process's own memory since ``exec``), polled until :meth:`stop`.

    Not ``wait4``'s ``ru_maxrss``: Linux carries the pre-``exec`` high-water mark over, so a child of a
    large process (pytest with torch loaded) reports at least its parent's size.
    """

    def __init__(self, pid: int, interval_s: float = 0.01):
        self.pid = pid
        self.peak_mb: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, args=(interval_s,), daemon=True)
        self._thread.start()

    def sample(self) -> None:
        v = _hwm_of(self.pid)
        if v is not None:
            self.peak_mb = v if self.peak_mb is None else max(self.peak_mb, v)

    def _poll(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            self.sample()

    def stop(self) -> float | None:
        self._stop.set()
        self._thread.join()
        return self.peak_mb


__all__ = ["ChildPeakRSS", "PeakRSS", "process_peak_mb", "rss_mb"]
