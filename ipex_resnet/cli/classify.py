"""``ipex-resnet classify``: image files and folders to top-k labels (text, JSON, streamed JSONL, or
Ray Data across actors)."""

from __future__ import annotations

import argparse
import json
import sys
import warnings

from ipex_resnet.apps import bulk
from ipex_resnet.cli import measure_later
from ipex_resnet.cli.options import add_model_options, add_plan_options, int8_kwargs, model_kwargs
from ipex_resnet.core.api import load, undecided_auto
from ipex_resnet.errors import ConfigError
from ipex_resnet.util.stdout import stdout_to_stderr

JSON_SCHEMA_VERSION = 1


def main(args: argparse.Namespace) -> int:
    if args.ray:
        return _classify_with_ray(args)
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
    with stdout_to_stderr(args.json or args.jsonl == "-"):  # the user's model may print as it is built
        clf = _load_for_classify(args, None if inputs is None else len(inputs))
    if inputs is None:
        return _classify_to_jsonl(clf, args)
    return _classify_listed(clf, args, inputs)


def _classify_to_jsonl(clf, args: argparse.Namespace) -> int:
    """``--jsonl OUT``: one line per image as it is classified (resumable)."""
    summary = bulk.classify_to_jsonl(
        clf,
        args.images,
        args.jsonl,
        resume=args.resume,
        topk=args.topk,
        batch_size=args.batch_size,
        workers=args.workers,
    )
    print(
        f"{summary.ok} classified, {summary.failed} failed, {summary.skipped} already in {args.jsonl}; "
        f"{summary.images_per_s:.1f} images/s",
        file=sys.stderr,
    )
    return 1 if summary.failed else 0


def _classify_listed(clf, args: argparse.Namespace, inputs: list[str]) -> int:
    """The images' top-k as text, or as one JSON document with ``--json``."""
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

    with stdout_to_stderr(args.json):
        summary = bulk.run(
            clf, inputs, sink, topk=args.topk, batch_size=args.batch_size, workers=args.workers, progress=False
        )
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


def _load_for_classify(args: argparse.Namespace, images: int | None):
    kwargs = {
        **model_kwargs(args),
        "backend": args.backend,
        "precision": args.precision,
        "threads": args.threads,
        "streams": args.streams,
        **int8_kwargs(args),
    }
    decision = None
    if measure_later.applies(kwargs, images):
        decision = undecided_auto(
            kwargs["model"],
            kwargs["weights"],
            backend=args.backend,
            precision=args.precision,
            threads=args.threads,
            streams=args.streams,
            model_id=kwargs.get("model_id"),
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if decision is not None:  # the first call: answer on the reference now, measure in the background
            clf = load(
                **{**kwargs, "backend": "eager", "precision": "fp32"}, result_cache=getattr(args, "result_cache", None)
            )
        else:
            clf = load(**kwargs, result_cache=getattr(args, "result_cache", None))
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    if decision is not None:
        pid, log = measure_later.start(decision, kwargs)
        print(
            "note: the engines are not measured on this machine for this model yet: this call runs on eager "
            "(the FP32 reference, nothing to compile); "
            + (f"a background process (pid {pid}) measures them" if pid else "another process measures them")
            + f" (log: {log}); the next call uses the fastest",
            file=sys.stderr,
        )
    if clf.random_init:
        print("warning: random weights (--weights none): labels and scores are meaningless", file=sys.stderr)
    if args.preprocess:
        clf.preprocessor = clf.preprocessor.with_mode(args.preprocess)  # the result cache's key includes the mode
    if clf.result_cache is not None:
        print(f"note: {clf.result_cache.describe()}", file=sys.stderr)
    return clf


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "images",
        nargs="+",
        metavar="DIR_OR_FILE",
        help="image files, or folders (walked recursively for .jpg/.png/.webp/.gif/.bmp/.tif)",
    )
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--json", action="store_true", help="stable JSON output (see README)")
    p.add_argument(
        "--jsonl",
        metavar="OUT",
        default=None,
        help="stream one JSON line per image to OUT ('-' for stdout), with a progress bar on a terminal",
    )
    p.add_argument("--resume", action="store_true", help="with --jsonl: skip inputs OUT already has, append the rest")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="decode threads (default: the cores the model's threads leave free, at least 1)",
    )
    p.add_argument(
        "--preprocess",
        choices=("fast", "exact"),
        default=None,
        help="fast: DCT-domain JPEG scaling + crop-window resize (default); exact: the torchvision "
        "preset bit for bit (env IPEX_RESNET_PREPROCESS)",
    )
    p.add_argument(
        "--result-cache",
        choices=("off", "exact", "perceptual"),
        default="off",
        help="cache top-k results of repeated images within the run: exact = same bytes (SHA-256, no "
        "decode), perceptual = same picture re-encoded or resized (perceptual hash; pip install "
        "'ipex_resnet[resultcache]'); keyed by the model's artifact key too (not with --ray)",
    )
    add_model_options(p)
    add_plan_options(p)
    g = p.add_argument_group("Ray (scale out; pip install 'ipex_resnet[ray]')")
    g.add_argument("--ray", action="store_true", help="classify with Ray Data on a pool of actors")
    g.add_argument(
        "--address",
        default=None,
        help="Ray cluster address (default: start a local one; 'auto': the cluster this machine belongs to)",
    )
    g.add_argument("--actors", type=int, default=2, help="model actors (default: 2)")
    g.add_argument("--cpus-per-actor", type=int, default=1, help="CPUs (and intra-op threads) per actor (default: 1)")
    g.add_argument("--parquet", metavar="DIR", default=None, help="with --ray: write Parquet files to DIR")


def _classify_with_ray(args) -> int:
    """``ipex-resnet classify --ray``: results to ``--jsonl OUT`` (streamed, in order) or ``--parquet DIR``."""
    from ipex_resnet.apps.ray import classify_dataset, import_ray, row_to_record

    if not args.jsonl and not args.parquet:
        raise ConfigError("--ray writes its results to --jsonl OUT or --parquet DIR; give one")
    if args.resume or args.json:
        raise ConfigError("--ray does not support --resume or --json")
    if getattr(args, "result_cache", "off") not in (None, "off"):
        raise ConfigError("--ray does not support --result-cache (each actor would hold its own)")
    if args.actors < 1 or args.cpus_per_actor < 1:
        raise ConfigError("--actors and --cpus-per-actor must be at least 1")
    inputs = bulk.expand_inputs(args.images)
    if not inputs:
        raise ConfigError(f"no images found in {', '.join(args.images)}")
    ray = import_ray()
    ray.init(
        address=args.address,
        include_dashboard=False,
        log_to_driver=False,
        **({} if args.address else {"num_cpus": args.actors * args.cpus_per_actor}),
    )
    ray.data.DataContext.get_current().enable_progress_bars = sys.stderr.isatty()
    try:
        ds = classify_dataset(
            inputs,
            actors=args.actors,
            cpus_per_actor=args.cpus_per_actor,
            batch_size=args.batch_size,
            **model_kwargs(args),
            backend=args.backend,
            precision=args.precision,
            topk=args.topk,
            preprocess=args.preprocess,
        )
        ok, failed = _ray_to_jsonl(ds, args.jsonl, row_to_record) if args.jsonl else _ray_to_parquet(ds, args.parquet)
        print(
            f"{ok} classified, {failed} failed (Ray, {args.actors} actors x {args.cpus_per_actor} CPU)", file=sys.stderr
        )
        return 1 if failed else 0
    finally:
        ray.shutdown()


def _ray_to_jsonl(ds, path: str, row_to_record) -> tuple[int, int]:
    """Stream the dataset's rows, in order, to ``path`` (``-``: stdout); (classified, failed)."""
    failed = ok = 0
    out = sys.stdout if path == "-" else open(path, "w", encoding="utf-8")  # noqa: SIM115 - or stdout; closed below
    try:
        for row in ds.iter_rows():
            rec = row_to_record(row)
            if "error" in rec:
                failed += 1
                print(f"error: {rec['input']}: {rec['error']}", file=sys.stderr)
            else:
                ok += 1
            out.write(json.dumps(rec) + "\n")
            out.flush()
    finally:
        if out is not sys.stdout:
            out.close()
    return ok, failed


def _ray_to_parquet(ds, path: str) -> tuple[int, int]:
    """Write the dataset as Parquet files under ``path``; (classified, failed)."""
    failed = ok = 0
    ds = ds.materialize()
    ds.write_parquet(path)
    for row in ds.select_columns(["input", "error"]).iter_rows():
        if row["error"] is None:
            ok += 1
        else:
            failed += 1
            print(f"error: {row['input']}: {row['error']}", file=sys.stderr)
    return ok, failed
