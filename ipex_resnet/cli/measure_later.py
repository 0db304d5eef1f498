"""The first ``classify`` on a machine answers at once: with no measured ``auto`` decision cached for
the model, a few images run on eager (the FP32 reference: nothing to compile) while a background
process measures every engine (``python -m ipex_resnet.cli.measure_later``) and caches the decision,
which the next call reads. One measurement per decision at a time (a lock file beside it); the
process runs at a lower CPU priority and logs beside the decision file."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

#: at most this many images take the eager answer; more are worth measuring first (the bulk path)
MAX_IMAGES = 32


def applies(kwargs: dict, images: int | None) -> bool:
    """Only the plain measured ``auto``: few images, no precision, INT8 or accuracy budget asked for."""
    return (images is not None and images <= MAX_IMAGES and str(kwargs.get("backend") or "auto") == "auto"
            and str(kwargs.get("precision") or "auto") == "auto" and not kwargs.get("calibration")
            and kwargs.get("accuracy_budget") is None)


def _lock_path(decision: Path) -> Path:
    return decision.with_suffix(".measuring")


@contextlib.contextmanager
def _held(decision: Path):
    """The decision's lock, held (True) or busy (False): one measurement at a time."""
    decision.parent.mkdir(parents=True, exist_ok=True)
    with open(_lock_path(decision), "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def start(decision: Path, load_kwargs: dict) -> tuple[int | None, Path]:
    """Measure in the background for ``load(**load_kwargs)``; (its pid, or None when one is already
    measuring this decision; the log)."""
    log = decision.with_suffix(".log")
    with _held(decision) as free:
        if not free:
            return None, log
    kwargs = dict(load_kwargs)
    if dataclasses.is_dataclass(kwargs.get("transforms")):
        kwargs["transforms"] = {k: list(v) if isinstance(v, tuple) else v
                                for k, v in dataclasses.asdict(kwargs["transforms"]).items()}
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", __name__, str(decision), json.dumps(kwargs)],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # outlives the command
    return proc.pid, log


def main(argv: list[str]) -> int:
    decision, kwargs = Path(argv[0]), json.loads(argv[1])
    with _held(decision) as free:
        if not free:
            print("another process is measuring this decision", file=sys.stderr)
            return 0
        with contextlib.suppress(OSError):
            os.nice(10)  # the user's next commands come first
        from ipex_resnet.core.api import load

        clf = load(**kwargs, measure=True)
        print(f"measured: {clf.plan.backend}/{clf.plan.precision}; {clf.plan.reasons.get('backend', '')}",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
