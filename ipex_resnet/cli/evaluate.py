"""``ipex-resnet evaluate``: top-1/top-5 against labelled images, for each precision."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

from ipex_resnet import engines
from ipex_resnet.cli.options import add_model_options, model_kwargs
from ipex_resnet.core.api import load
from ipex_resnet.core.evaluate import DEFAULT_PRECISIONS, LABELS_CSV, ClassifyFn, evaluate, format_table, read_labels
from ipex_resnet.errors import BackendUnavailable, ConfigError
from ipex_resnet.util.stdout import stdout_to_stderr


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        required=True,
        help=f"labelled images: a folder with {LABELS_CSV} (file,class_index) or one sub-folder per class",
    )
    add_model_options(p)
    p.add_argument(
        "--backends",
        "--backend",
        dest="backends",
        default="auto",
        help="comma-separated engines, all (every engine that runs here, eager first), or auto (default: auto)",
    )
    p.add_argument(
        "--precisions",
        default=DEFAULT_PRECISIONS,
        help=f"comma-separated precisions to compare (default: {DEFAULT_PRECISIONS})",
    )
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default: from the plan)")
    p.add_argument("--calibration", default=None, help="folder of calibration images (needed for int8)")
    p.add_argument(
        "--accept-accuracy", action="store_true", help="int8: evaluate even if agreement with fp32 is below the gate"
    )
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--json", action="store_true", help="print the rows as JSON")


def _paths(backends: str, precisions: list[str]) -> list[tuple[str, str]]:
    """(engine, precision) pairs to evaluate; with ``all``, eager fp32 (the reference) first."""
    names = [b.strip().lower() for b in backends.split(",") if b.strip()]
    if names == ["all"]:
        names = ["eager"] + [n for n, (ok, _) in engines.availability().items() if ok and n != "eager"]
    for n in names:
        if n != "auto":
            engines.get(n)  # unknown names: ConfigError with the list
    pairs = [(n, p) for n in names for p in precisions]
    if ("eager", "fp32") in pairs:
        pairs.remove(("eager", "fp32"))
        pairs.insert(0, ("eager", "fp32"))
    return pairs


def _classify_fn(clf) -> ClassifyFn:
    def run(paths: list[Path]) -> np.ndarray:
        images = [clf.preprocess(p) for p in paths]
        if hasattr(images[0], "detach"):
            import torch

            out = clf(torch.stack(images))
        else:
            out = clf(np.stack(images))
        return out.detach().float().cpu().numpy() if hasattr(out, "detach") else np.asarray(out, np.float32)

    return run


def _evaluate(args: argparse.Namespace, precisions: list[str], samples):
    """Load the model for each (engine, precision) that runs here and evaluate them together."""
    fns = {}
    spec = model_kwargs(args)
    for backend, p in _paths(args.backends, precisions):
        kwargs = {"calibration": args.calibration, "accept_accuracy": args.accept_accuracy} if p == "int8" else {}
        try:
            clf = load(**spec, backend=backend, precision=p, threads=args.threads, **kwargs)
        except BackendUnavailable as exc:  # a path this machine cannot run: say so, evaluate the rest
            print(f"skipped {backend}/{p}: {exc}", file=sys.stderr)
            continue
        if samples is None:
            samples = read_labels(args.data, list(clf.categories))
        fns[f"{p} ({clf.plan.backend})"] = _classify_fn(clf)
    return evaluate(samples, fns, batch_size=args.batch_size)


def main(args: argparse.Namespace) -> int:
    import json

    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    if not precisions:
        raise ConfigError("--precisions is empty; e.g. --precisions fp32,bf16,int8")
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {args.batch_size}")
    if "int8" in precisions and not args.calibration:
        raise ConfigError(
            "int8 needs calibration images: add --calibration DIR (a folder of images like "
            "the ones you will classify, not the evaluation images)"
        )
    samples = None
    if not Path(args.data).expanduser().is_dir() or (Path(args.data) / LABELS_CSV).is_file():
        samples = read_labels(args.data)  # fail on bad labels before loading any model
    with stdout_to_stderr(args.json):  # the user's model may print as it is built or run
        rows = _evaluate(args, precisions, samples)
    if args.json:
        print(json.dumps([dataclasses.asdict(r) for r in rows], indent=2))
    else:
        print(format_table(rows))
    sys.stdout.flush()
    return 0
