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
    "compile": ("ipex_resnet.precompile", "build compiled artifacts into the cache ahead of time"),
    "quantize": ("ipex_resnet.quantize_cmd", "calibrate + quantize to INT8, cache it, report agreement with fp32"),
    "evaluate": ("ipex_resnet.quantization.evaluate", "top-1/top-5 against labels for each precision"),
}

JSON_SCHEMA_VERSION = 1


def add_plan_options(p: argparse.ArgumentParser | argparse._ArgumentGroup, *, precision: bool = True) -> None:
    """--backend/--precision/--threads and the INT8 options, shared by every subcommand that loads a model."""
    p.add_argument("--backend", default="auto",
                   help="auto|ipex|inductor|openvino|onnxruntime|eager (default: auto, by measurement)")
    if precision:
        p.add_argument("--precision", default="auto",
                       help="auto|bf16|fp32|int8 (default: auto, never int8; int8 needs --calibration once)")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default: from the plan)")
    p.add_argument("--calibration", default=None, metavar="DIR",
                   help="int8: folder of calibration images (once; the quantized artifact is cached)")
    p.add_argument("--accept-accuracy", action="store_true",
                   help="int8: load even if agreement with fp32 is below the gate")


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
    from . import bulk
    from .errors import ConfigError

    if args.ray:
        from .ray import main_classify

        return main_classify(args)
    if args.resume and not args.jsonl:
        raise ConfigError("--resume needs --jsonl OUT")
    if args.jsonl and args.json:
        raise ConfigError("--json and --jsonl are exclusive: --json prints one document, --jsonl streams lines")
    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {args.workers}")
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {args.batch_size}")
    inputs = None
    if not args.jsonl:
        inputs = bulk.expand_inputs(args.images)
        if not inputs:
            raise ConfigError(f"no images found in {', '.join(args.images)}")
    clf = _load_for_classify(args)

    if args.jsonl:
        summary = bulk.classify_to_jsonl(clf, args.images, args.jsonl, resume=args.resume, topk=args.topk,
                                         batch_size=args.batch_size, workers=args.workers)
        print(f"{summary.ok} classified, {summary.failed} failed, {summary.skipped} already in {args.jsonl}; "
              f"{summary.images_per_s:.1f} images/s", file=sys.stderr)
        return 1 if summary.failed else 0

    results: dict[str, dict] = {}

    def sink(name, top, error):
        if error is not None:
            print(f"error: {name}: {error}", file=sys.stderr)
            results[name] = {"input": name, "error": error}
            return
        results[name] = {"input": name, "top": top}
        if not args.json:
            print(name)
            for r in top:
                print(f"  {r['score']:7.2%}  {r['label']} ({r['index']})")

    summary = bulk.run(clf, inputs, sink, topk=args.topk, batch_size=args.batch_size, workers=args.workers,
                       progress=False)
    if args.json:
        doc = {
            "version": JSON_SCHEMA_VERSION,
            "model": clf.plan.model,
            "weights": clf.plan.weights,
            "random_init": clf.random_init,
            "backend": clf.plan.backend,
            "precision": clf.plan.precision,
            "results": [results[p] for p in inputs],
        }
        print(json.dumps(doc, indent=2))
    return 1 if summary.failed else 0


def _load_for_classify(args: argparse.Namespace):
    from .loader import load

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clf = load(args.model, weights=args.weights, backend=args.backend, precision=args.precision,
                   threads=args.threads, calibration=args.calibration, accept_accuracy=args.accept_accuracy)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    if clf.random_init:
        print("warning: random weights (--weights none): labels and scores are meaningless", file=sys.stderr)
    if args.preprocess:
        clf.preprocessor = clf.preprocessor.with_mode(args.preprocess)
    return clf


def add_classify_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", metavar="DIR_OR_FILE",
                   help="image files, or folders (walked recursively for .jpg/.png/.webp/.gif/.bmp/.tif)")
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--json", action="store_true", help="stable JSON output (see README)")
    p.add_argument("--jsonl", metavar="OUT", default=None,
                   help="stream one JSON line per image to OUT ('-' for stdout), with a progress bar on a terminal")
    p.add_argument("--resume", action="store_true", help="with --jsonl: skip inputs OUT already has, append the rest")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=None,
                   help="decode threads (default: the cores the model's threads leave free, at least 1)")
    p.add_argument("--preprocess", choices=("fast", "exact"), default=None,
                   help="fast: DCT-domain JPEG scaling + crop-window resize (default); exact: the torchvision "
                        "preset bit for bit (env IPEX_RESNET_PREPROCESS)")
    add_model_options(p)
    add_plan_options(p)
    g = p.add_argument_group("Ray (scale out; pip install 'ipex_resnet[ray]')")
    g.add_argument("--ray", action="store_true", help="classify with Ray Data on a pool of actors")
    g.add_argument("--address", default=None, help="Ray cluster address (default: start a local one; 'auto': "
                                                   "the cluster this machine belongs to)")
    g.add_argument("--actors", type=int, default=2, help="model actors (default: 2)")
    g.add_argument("--cpus-per-actor", type=int, default=1, help="CPUs (and intra-op threads) per actor (default: 1)")
    g.add_argument("--parquet", metavar="DIR", default=None, help="with --ray: write Parquet files to DIR")


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="ipex-resnet", description="Accelerated TorchVision classifier for Xeon CPUs")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("probe", help="show what this CPU has and the plan the loader will use")
    add_plan_options(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_probe)

    p = sub.add_parser("classify", help="classify image files and folders")
    add_classify_arguments(p)
    p.set_defaults(func=_classify)

    wanted = _command_in(argv) if argv is not None else None
    for name, (modname, help_text) in EXTERNAL_COMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        if wanted is not None and name != wanted:  # import a subcommand's module only when it runs
            continue
        try:
            mod = importlib.import_module(modname)
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
    from .errors import IpexResnetError

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
