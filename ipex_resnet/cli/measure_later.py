"""The first ``classify`` on a machine answers at once: with no measured ``auto`` decision cached for
the model, a few images run on eager (the FP32 reference: nothing to compile) while a background
process measures every engine (``python -m ipex_resnet.cli.measure_later``) and caches the decision,
which the next call reads. One measurement per decision at a time: the command takes the lock file
beside the decision and hands it to the process, which holds it until it exits. The process runs at a
lower CPU priority and logs beside the decision file."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

from ipex_resnet.core.policy import ENV_PRECISION

#: at most this many images take the eager answer; more are worth measuring first (the bulk path)
MAX_IMAGES = 32


def applies(kwargs: dict, images: int | None) -> bool:
    """Only the plain measured ``auto``: few images, no precision (argument or environment), INT8 or
    accuracy budget asked for. (An explicit backend, or ``IPEX_RESNET_BACKEND``, never measures.)"""
    precision = kwargs.get("precision") or os.environ.get(ENV_PRECISION) or "auto"
    return (
        images is not None
        and images <= MAX_IMAGES
        and str(kwargs.get("backend") or "auto") == "auto"
        and str(precision).strip().lower() == "auto"
        and not kwargs.get("calibration")
        and kwargs.get("accuracy_budget") is None
    )


def start(decision: Path, load_kwargs: dict) -> tuple[int | None, Path]:
    """Measure in the background for ``load(**load_kwargs)``; (its pid, or None when a process already
    measures this decision; the log)."""
    log = decision.with_suffix(".log")
    decision.parent.mkdir(parents=True, exist_ok=True)
    kwargs = dict(load_kwargs)
    if hasattr(kwargs.get("transforms"), "to_dict"):  # a PresetSpec: its JSON form
        kwargs["transforms"] = kwargs["transforms"].to_dict()
    fd = os.open(decision.with_suffix(".measuring"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None, log
        with open(log, "w") as out:  # the lock is ours: no other measurement writes this log
            proc = subprocess.Popen(
                [sys.executable, "-m", __name__, str(fd), json.dumps(kwargs)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                pass_fds=(fd,),
                start_new_session=True,
            )  # holds the lock; outlives us
        return proc.pid, log
    finally:
        os.close(fd)  # the lock stays with the process's copy until it exits


def main(argv: list[str]) -> int:
    lock_fd, kwargs = int(argv[0]), json.loads(argv[1])
    os.fstat(lock_fd)  # the inherited lock: held until this process exits
    with contextlib.suppress(OSError):
        os.nice(10)  # the user's next commands come first
    from ipex_resnet.core.api import load

    clf = load(**kwargs, measure=True)
    print(f"measured: {clf.plan.backend}/{clf.plan.precision}; {clf.plan.reasons.get('backend', '')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
