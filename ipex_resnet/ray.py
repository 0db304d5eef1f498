"""Scale-out on Ray Data: a callable-class classifier for ``map_batches``, and ``classify --ray``.

    import ray, ray.data
    from ipex_resnet.ray import Classifier

    ds = ray.data.from_items([{"path": p} for p in paths])        # or read_binary_files(..., include_paths=True)
    ds = ds.map_batches(Classifier, fn_constructor_kwargs={"weights": "DEFAULT"},
                        compute=ray.data.ActorPoolStrategy(size=4), num_cpus=2, batch_size=32)
    ds.write_parquet("out/")

Each actor loads the model once (``ipex_resnet.load``, which reuses the compiled-artifact cache when
there is one) with as many intra-op threads as the CPUs Ray assigned it, then classifies batches of
rows. A row has a ``path`` (read on the worker: a shared filesystem on a multi-node cluster) or
``bytes`` (from ``read_binary_files``). Output columns: ``input``, ``error`` (null when classified),
``top_index``, ``top_label``, ``top_score`` (lists, best first). See docs/input.md.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import sys

from .errors import ConfigError, ImageError

INSTALL_HINT = "Ray is not installed: pip install 'ipex_resnet[ray]'  (ray[data])"


def _ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"{INSTALL_HINT} ({exc})") from None
    return ray


def assigned_cpus(default: int = 1) -> int:
    """CPUs Ray assigned to this worker (its ``num_cpus``), or ``default`` outside Ray."""
    try:
        import ray

        if ray.is_initialized():
            n = ray.get_runtime_context().get_assigned_resources().get("CPU")
            if n:
                return max(1, int(n))
    except Exception:  # noqa: BLE001 - not in a Ray worker
        pass
    return default


class Classifier:
    """A Ray Data callable class: ``batch (dict of columns) -> results (pyarrow Table)``."""

    def __init__(self, model: str = "resnet18", weights: str | None = "DEFAULT", *, backend: str = "auto",
                 precision: str = "auto", threads: int | None = None, topk: int = 5, preprocess: str | None = None):
        threads = threads or assigned_cpus()
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
        import ipex_resnet

        self.clf = ipex_resnet.load(model, weights=weights, backend=backend, precision=precision, threads=threads)
        if preprocess:
            self.clf.preprocessor = self.clf.preprocessor.with_mode(preprocess)
        self.topk = topk
        self.threads = threads
        # Decode a batch on as many threads as the actor has CPUs (Pillow releases the GIL): with one,
        # an actor of 4 CPUs spent about as long decoding 32 photos on one core as inferring them on 4.
        self.pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="ipex-resnet-decode")

    def __call__(self, batch: dict):
        import pyarrow as pa

        paths = batch.get("path")
        blobs = batch.get("bytes")
        n = len(paths if paths is not None else blobs)
        names = [str(p) for p in paths] if paths is not None else [f"row {i}" for i in range(n)]
        arrays, good, errors = [], [], [None] * n
        pre = self.clf.preprocessor

        def decode(i: int):
            try:
                return pre(bytes(blobs[i]) if blobs is not None else names[i], name=names[i])
            except ImageError as exc:
                return exc

        for i, out in enumerate(self.pool.map(decode, range(n))):
            if isinstance(out, ImageError):
                errors[i] = out.problem
            else:
                arrays.append(out)
                good.append(i)
        tops: list[list[dict]] = [[] for _ in range(n)]
        if arrays:
            for i, top in zip(good, self.clf.predict_tensors(arrays, topk=self.topk, batch_size=len(arrays))):
                tops[i] = top
        return pa.table({
            "input": pa.array(names, pa.string()),
            "error": pa.array(errors, pa.string()),
            "top_index": pa.array([[t["index"] for t in top] for top in tops], pa.list_(pa.int32())),
            "top_label": pa.array([[t["label"] for t in top] for top in tops], pa.list_(pa.string())),
            "top_score": pa.array([[t["score"] for t in top] for top in tops], pa.list_(pa.float64())),
        })


def row_to_record(row: dict) -> dict:
    """A result row -> the ``classify --jsonl`` record (``{"input", "top"}`` or ``{"input", "error"}``)."""
    if row.get("error") is not None:
        return {"input": row["input"], "error": row["error"]}
    return {"input": row["input"], "top": [{"label": lbl, "index": int(i), "score": float(s)} for lbl, i, s in
                                           zip(row["top_label"], row["top_index"], row["top_score"])]}


def classify_dataset(paths: list[str], *, actors: int = 2, cpus_per_actor: int = 1, batch_size: int = 32,
                     **classifier_kwargs):
    """A Ray dataset of results for ``paths`` (lazy; in input order). Ray must be initialized."""
    ray = _ray()
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    ds = ray.data.from_items([{"path": p} for p in paths])
    return ds.map_batches(Classifier, fn_constructor_kwargs={"threads": cpus_per_actor, **classifier_kwargs},
                          compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=cpus_per_actor,
                          batch_size=batch_size, batch_format="numpy")


def main_classify(args) -> int:
    """``ipex-resnet classify --ray``: results to ``--jsonl OUT`` (streamed, in order) or ``--parquet DIR``."""
    from . import bulk

    if not args.jsonl and not args.parquet:
        raise ConfigError("--ray writes its results to --jsonl OUT or --parquet DIR; give one")
    if args.resume or args.json:
        raise ConfigError("--ray does not support --resume or --json")
    if args.actors < 1 or args.cpus_per_actor < 1:
        raise ConfigError("--actors and --cpus-per-actor must be at least 1")
    inputs = bulk.expand_inputs(args.images)
    if not inputs:
        raise ConfigError(f"no images found in {', '.join(args.images)}")
    ray = _ray()
    ray.init(address=args.address, include_dashboard=False, log_to_driver=False,
             **({} if args.address else {"num_cpus": args.actors * args.cpus_per_actor}))
    ray.data.DataContext.get_current().enable_progress_bars = sys.stderr.isatty()
    try:
        ds = classify_dataset(inputs, actors=args.actors, cpus_per_actor=args.cpus_per_actor,
                              batch_size=args.batch_size, model=args.model, weights=args.weights,
                              backend=args.backend, precision=args.precision, topk=args.topk,
                              preprocess=args.preprocess)
        failed = ok = 0
        if args.jsonl:
            out = sys.stdout if args.jsonl == "-" else open(args.jsonl, "w", encoding="utf-8")  # noqa: SIM115
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
        else:
            ds = ds.materialize()
            ds.write_parquet(args.parquet)
            for row in ds.select_columns(["input", "error"]).iter_rows():
                if row["error"] is None:
                    ok += 1
                else:
                    failed += 1
                    print(f"error: {row['input']}: {row['error']}", file=sys.stderr)
        print(f"{ok} classified, {failed} failed (Ray, {args.actors} actors x {args.cpus_per_actor} CPU)",
              file=sys.stderr)
        return 1 if failed else 0
    finally:
        ray.shutdown()


__all__ = ["Classifier", "assigned_cpus", "classify_dataset", "row_to_record", "main_classify"]
