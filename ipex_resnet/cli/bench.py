"""``ipex-resnet bench`` (the options are declared in :mod:`.options`, shared with bench/conftest.py).

Exit codes: 0 done (and the gate passed); 1 ``--gate``: a regression; 2 a usage error (bad options, an
unknown baseline, a baseline of another machine key); 3 ``--enforce-targets``: a target not met;
4 ``--gate``: inconclusive (no regression, but a change within the measured noise: see the gate's lines).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ipex_resnet.benchmarking.gated import EXIT_USAGE
from ipex_resnet.benchmarking.options import add_cli_arguments, raw_from_cli, settings
from ipex_resnet.errors import ConfigError

EXIT_TARGETS_NOT_MET = 3


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_cli_arguments(p)


def main(args: argparse.Namespace) -> int:
    from ipex_resnet.benchmarking import gated
    from ipex_resnet.benchmarking.report import format_table
    from ipex_resnet.benchmarking.run import Progress, default_output, run_report

    try:
        s = settings(raw_from_cli(args))
        prepared = gated.prepare(s)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    doc = run_report(s, Progress(enabled=s.progress), baseline=prepared.baseline_entries)
    out = Path(s.output) if s.output else default_output(doc)
    out.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    print(format_table(doc))
    print(f"report: {out}")
    try:
        outcome = gated.finish(prepared, s, doc)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    for line in outcome.lines:
        print(line)
    if not outcome.ok:
        return outcome.exit_code
    if s.enforce_targets and not all(t["met"] for t in doc["targets"]):
        print("error: targets not met (--enforce-targets)", file=sys.stderr)
        return EXIT_TARGETS_NOT_MET
    return 0


__all__ = ["add_arguments", "main"]
