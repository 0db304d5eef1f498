"""``ipex-resnet compare``: bench reports from several machines side by side (table + PNG chart), and
each report's cost per million images where it carries a price (``bench --price-per-hour``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ipex_resnet.benchmarking.compare import chart, load_report, table
from ipex_resnet.errors import ConfigError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("reports", nargs="+", help="JSON reports written by ipex-resnet bench")
    p.add_argument(
        "--output",
        "-o",
        default="bench-compare.png",
        help="PNG chart path: throughput, latency and cost panels (default: bench-compare.png)",
    )
    p.add_argument("--no-chart", action="store_true", help="print the table only")


def main(args: argparse.Namespace) -> int:
    try:
        docs = [load_report(r) for r in args.reports]
        if not args.no_chart:
            out_dir = Path(args.output).resolve().parent
            if not out_dir.is_dir():
                raise ConfigError(f"--output directory {str(out_dir)!r} does not exist")
        print(table(docs))
        if not args.no_chart:
            print(f"chart: {chart(docs, args.output)}")
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
