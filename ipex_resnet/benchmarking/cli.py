"""``ipex-resnet bench`` (the options are declared in :mod:`.options`, shared with bench/conftest.py)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import ConfigError
from .options import add_cli_arguments, raw_from_cli, settings

EXIT_TARGETS_NOT_MET = 3


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_cli_arguments(p)


def main(args: argparse.Namespace) -> int:
    from .report import format_table
    from .run import Progress, default_output, run_report

    try:
        s = settings(raw_from_cli(args))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    doc = run_report(s, Progress(enabled=s.progress))
    out = Path(s.output) if s.output else default_output(doc)
    out.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    print(format_table(doc))
    print(f"report: {out}")
    if s.enforce_targets and not all(t["met"] for t in doc["targets"]):
        print("error: targets not met (--enforce-targets)", file=sys.stderr)
        return EXIT_TARGETS_NOT_MET
    return 0


__all__ = ["add_arguments", "main"]
