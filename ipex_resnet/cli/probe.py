"""``ipex-resnet probe``: what this CPU has, which engines can run, and the plan the loader will use."""

from __future__ import annotations

import argparse
import json

from ipex_resnet import engines
from ipex_resnet.cli.options import add_plan_options
from ipex_resnet.core.api import plan_for, probe
from ipex_resnet.util.stdout import stdout_to_stderr


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_plan_options(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")


def main(args: argparse.Namespace) -> int:
    with stdout_to_stderr(args.json):  # an engine's library may print as it is imported
        cpu = probe()
        avail = engines.availability()
        plan = plan_for(cpu, args.backend, args.precision, args.threads, args.streams)
    if args.json:
        print(
            json.dumps(
                {
                    "cpu": cpu.to_dict(),
                    "backends": {k: {"available": v[0], "reason": v[1]} for k, v in avail.items()},
                    "plan": plan.to_dict(),
                },
                indent=2,
            )
        )
        return 0
    print(cpu.describe())
    print()
    print("backends:")
    for name, (ok, why) in avail.items():
        print(f"  {name:<12}{'yes' if ok else 'no ':<4} {why}")
    print()
    print("plan:")
    print("\n".join("  " + line for line in plan.describe().splitlines()[2:]))
    return 0
