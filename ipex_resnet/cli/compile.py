"""``ipex-resnet compile``: build the compiled artifacts into the cache ahead of time (image builds,
deploy steps), so the first ``classify`` / ``serve`` / ``load()`` starts warm.

    ipex-resnet compile --model resnet18 --weights DEFAULT                 # every engine x native precision
    ipex-resnet compile --backends openvino --precisions bf16 --measure    # one, and record the auto decision
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

from ipex_resnet import engines
from ipex_resnet.cli.options import add_model_options, model_kwargs
from ipex_resnet.core.api import load
from ipex_resnet.errors import ConfigError, IpexResnetError
from ipex_resnet.hardware.cpu import probe


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_options(p)
    p.add_argument(
        "--backends", default="all", help="comma-separated engines, or all (default: every engine that runs here)"
    )
    p.add_argument(
        "--precisions",
        default="native",
        help="comma-separated fp32,bf16,int8, or native (default: fp32 and, where native, bf16)",
    )
    p.add_argument("--threads", type=int, default=None, help="threads the artifacts are checked with")
    p.add_argument("--calibration", default=None, metavar="DIR", help="folder of calibration images (int8)")
    p.add_argument(
        "--measure", action="store_true", help="also measure the engines and cache the backend='auto' decision"
    )


def _targets(cpu, backends_arg: str, precisions_arg: str) -> list[tuple[str, str]]:
    avail = engines.availability()
    names = (
        [n for n in engines.names() if avail[n][0] and engines.get(n).cacheable]
        if backends_arg.strip().lower() == "all"
        else [b.strip().lower() for b in backends_arg.split(",") if b.strip()]
    )
    for n in names:
        engines.get(n)  # unknown names: ConfigError with the list
    out = []
    for n in names:
        supported = engines.get(n).precisions(cpu)
        if precisions_arg.strip().lower() == "native":
            wanted = ["fp32"] + (["bf16"] if cpu.has_native_bf16 and "bf16" in supported else [])
        else:
            wanted = [p.strip().lower() for p in precisions_arg.split(",") if p.strip()]
            bad = [p for p in wanted if p not in engines.PRECISIONS]
            if bad:
                raise ConfigError(f"unknown precision {bad[0]!r}: choose from {', '.join(engines.PRECISIONS)}")
        out += [(n, p) for p in wanted]
    return out


def main(args: argparse.Namespace) -> int:
    cpu = probe(check_torch=False)
    spec = model_kwargs(args)
    failures = 0
    for backend, precision in _targets(cpu, args.backends, args.precisions):
        t0 = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                clf = load(
                    **spec,
                    backend=backend,
                    precision=precision,
                    threads=args.threads,
                    calibration=args.calibration,
                    measure=False,
                )
        except IpexResnetError as exc:
            print(f"{backend}/{precision}: error: {exc}", file=sys.stderr)
            failures += 1
            continue
        art = clf.artifact or {}
        state = "cached already" if art.get("hit") else f"built in {time.perf_counter() - t0:.1f} s"
        print(f"{backend}/{precision}: {state}: {art.get('entry', '(not cacheable)')}")
    if args.measure:
        clf = load(**spec, threads=args.threads, measure=True)
        print(f"auto: {clf.plan.backend}/{clf.plan.precision} -- {clf.plan.reasons['backend']}")
    return 1 if failures else 0
