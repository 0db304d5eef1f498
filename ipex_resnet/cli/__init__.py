"""ipex-resnet: probe | classify | compile | quantize | evaluate | bench | compare | serve.

Errors a user can act on print as one line (``error: ...``) with a non-zero exit:
1 when some inputs failed but the rest were done, 2 for a bad option or setup.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ipex_resnet.errors import IpexResnetError
from ipex_resnet.util.version import __version__

# Every subcommand is one module of this package with add_arguments(parser) and main(args) -> int;
# a module is imported only when its command runs (serve needs starlette, bench matplotlib).
COMMANDS = {
    "probe": "show what this CPU has and the plan the loader will use",
    "classify": "classify image files and folders",
    "compile": "build compiled artifacts into the cache ahead of time",
    "quantize": "calibrate + quantize to INT8, cache it, report agreement with fp32",
    "evaluate": "top-1/top-5 against labels for each precision",
    "bench": "run the benchmark matrix and write a JSON report",
    "compare": "compare bench reports across machines (table + PNG chart)",
    "serve": "serve the classifier over HTTP with dynamic batching",
}


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ipex-resnet", description="Accelerated TorchVision classifier for Xeon CPUs")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    wanted = _command_in(argv) if argv is not None else None
    for name, help_text in COMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        if wanted is not None and name != wanted:
            continue
        try:
            mod = importlib.import_module(f"{__name__}.{name}")
        except ImportError as exc:
            p.set_defaults(func=lambda a, e=exc, n=name: _unavailable(n, e))
            continue
        mod.add_arguments(p)
        p.set_defaults(func=mod.main)
    return parser


def _command_in(argv: list[str]) -> str | None:
    """The subcommand named on the command line (the first word that is not an option)."""
    for word in argv:
        if not word.startswith("-"):
            return word
    return None


def _unavailable(name: str, exc: ImportError) -> int:
    print(f"error: '{name}' is unavailable: {exc}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
    if getattr(args, "topk", 1) is not None and getattr(args, "topk", 1) < 1:
        print(f"error: --topk must be at least 1, got {args.topk}", file=sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except IpexResnetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
