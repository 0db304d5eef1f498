"""ipex-resnet: probe | classify | bench | compare | serve.

Errors a user can act on print as one line (``error: ...``) with a non-zero exit:
1 when some inputs failed but the rest were done, 2 for a bad option or setup.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import warnings

# Subcommands that live in their own modules: name -> (module, help). Each module provides
# add_arguments(parser) and main(args) -> int.
EXTERNAL_COMMANDS = {
    "bench": ("ipex_resnet.benchmarking.cli", "run the benchmark matrix and write a JSON report"),
    "compare": ("ipex_resnet.benchmarking.compare", "compare bench reports across machines (table + PNG chart)"),
    "serve": ("ipex_resnet.serve", "serve the classifier over HTTP with dynamic batching"),
}

JSON_SCHEMA_VERSION = 1


def add_plan_options(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """--backend/--precision/--threads, shared by every subcommand that loads a model."""
    p.add_argument("--backend", default="auto",
                   help="auto|ipex|inductor|openvino|onnxruntime|eager (default: auto, by measurement)")
    p.add_argument("--precision", default="auto", help="auto|bf16|fp32|int8 (default: auto; int8 needs --calibration)")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default: from the plan)")


def add_model_options(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """--model/--weights, shared by every subcommand that loads a model."""
    p.add_argument("--model", default="resnet18", help="torchvision classification model (default: resnet18)")
    p.add_argument("--weights", default="DEFAULT",
                   help="DEFAULT | an enum name like IMAGENET1K_V1 | PATH to a state dict | none")


def _probe(args: argparse.Namespace) -> int:
    from . import engines
    from .cpu import probe
    from .loader import plan_for

    cpu = probe()
    avail = engines.availability()
    plan = plan_for(cpu, args.backend, args.precision, args.threads)
    if args.json:
        print(json.dumps({"cpu": cpu.to_dict(), "backends": {k: {"available": v[0], "reason": v[1]}
                                                            for k, v in avail.items()},
                          "plan": plan.to_dict()}, indent=2))
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


def _classify(args: argparse.Namespace) -> int:
    from .errors import ImageError
    from .loader import load

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clf = load(args.model, weights=args.weights, backend=args.backend, precision=args.precision,
                   threads=args.threads)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    if clf.random_init:
        print("warning: random weights (--weights none): labels and scores are meaningless", file=sys.stderr)

    good, tensors, failures = [], [], {}
    for path in args.images:
        try:
            tensors.append(clf.preprocess(path))
            good.append(path)
        except ImageError as exc:
            failures[path] = exc.problem
            print(f"error: {exc}", file=sys.stderr)
    results = dict(zip(good, clf.predict_tensors(tensors, topk=args.topk, batch_size=args.batch_size)))

    if args.json:
        doc = {
            "version": JSON_SCHEMA_VERSION,
            "model": clf.plan.model,
            "weights": clf.plan.weights,
            "random_init": clf.random_init,
            "backend": clf.plan.backend,
            "precision": clf.plan.precision,
            "results": [{"input": p, "top": results[p]} if p in results else {"input": p, "error": failures[p]}
                        for p in args.images],
        }
        print(json.dumps(doc, indent=2))
    else:
        for p in args.images:
            if p not in results:
                continue
            print(p)
            for r in results[p]:
                print(f"  {r['score']:7.2%}  {r['label']} ({r['index']})")
    return 1 if failures else 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="ipex-resnet", description="Accelerated TorchVision classifier for Xeon CPUs")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("probe", help="show what this CPU has and the plan the loader will use")
    add_plan_options(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_probe)

    p = sub.add_parser("classify", help="classify image files")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--json", action="store_true", help="stable JSON output (see README)")
    p.add_argument("--batch-size", type=int, default=32)
    add_model_options(p)
    add_plan_options(p)
    p.set_defaults(func=_classify)

    for name, (modname, help_text) in EXTERNAL_COMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        try:
            mod = importlib.import_module(modname)
        except ImportError as exc:
            p.set_defaults(func=lambda a, e=exc, n=name: _unavailable(n, e))
            continue
        mod.add_arguments(p)
        p.set_defaults(func=mod.main)
    return parser


def _unavailable(name: str, exc: ImportError) -> int:
    print(f"error: '{name}' is unavailable: {exc}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    from .errors import IpexResnetError

    args = build_parser().parse_args(argv)
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
