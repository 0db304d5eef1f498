"""Scale-out on Ray Data: a callable-class classifier for ``map_batches``, and ``classify --ray``.

    import ray, ray.data
    from ipex_resnet.apps.ray import Classifier

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
import os

from ipex_resnet.errors import ImageError

INSTALL_HINT = "Ray is not installed: pip install 'ipex_resnet[ray]'  (ray[data])"


def import_ray():
    from ipex_resnet.util.deps import require

    require("ray.data", INSTALL_HINT)
    return require("ray", INSTALL_HINT)


def assigned_cpus(default: int = 1) -> int:
    """CPUs Ray assigned to this worker (its ``num_cpus``), or ``default`` outside Ray."""
    try:
        import ray

        if ray.is_initialized():
            n = ray.get_runtime_context().get_assigned_resources().get("CPU")
            if n:
                return max(1, int(n))
    except Exception:
        pass
    return default


class Classifier:
    """A Ray Data callable class: ``batch (dict of columns) -> results (pyarrow Table)``."""

    def __init__(
        self,
        model: str = "resnet18",
        weights: str | None = "DEFAULT",
        *,
        backend: str = "auto",
        precision: str = "auto",
        threads: int | None = None,
        topk: int = 5,
        preprocess: str | None = None,
        transforms=None,
        categories: list[str] | None = None,
    ):
        threads = threads or assigned_cpus()
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
        from ipex_resnet.core.api import load

        self.clf = load(
            model,
            weights=weights,
            backend=backend,
            precision=precision,
            threads=threads,
            transforms=transforms,
            categories=categories,
        )
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
        n = len(batch["path"] if paths is not None else batch["bytes"])  # a batch has one of the two
        names = [str(p) for p in paths] if paths is not None else [f"row {i}" for i in range(n)]
        arrays, good = [], []
        errors: list[str | None] = [None] * n
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
        return pa.table(
            {
                "input": pa.array(names, pa.string()),
                "error": pa.array(errors, pa.string()),
                "top_index": pa.array([[t["index"] for t in top] for top in tops], pa.list_(pa.int32())),
                "top_label": pa.array([[t["label"] for t in top] for top in tops], pa.list_(pa.string())),
                "top_score": pa.array([[t["score"] for t in top] for top in tops], pa.list_(pa.float64())),
            }
        )


def row_to_record(row: dict) -> dict:
    """A result row -> the ``classify --jsonl`` record (``{"input", "top"}`` or ``{"input", "error"}``)."""
    if row.get("error") is not None:
        return {"input": row["input"], "error": row["error"]}
    return {
        "input": row["input"],
        "top": [
            {"label": lbl, "index": int(i), "score": float(s)}
            for lbl, i, s in zip(row["top_label"], row["top_index"], row["top_score"])
        ],
    }


def classify_dataset(
    paths: list[str], *, actors: int = 2, cpus_per_actor: int = 1, batch_size: int = 32, **classifier_kwargs
):
    """A Ray dataset of results for ``paths`` (lazy; in input order). Ray must be initialized."""
    ray = import_ray()
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    ds = ray.data.from_items([{"path": p} for p in paths])
    return ds.map_batches(
        Classifier,
        fn_constructor_kwargs={"threads": cpus_per_actor, **classifier_kwargs},
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=cpus_per_actor,
        batch_size=batch_size,
        batch_format="numpy",
    )


__all__ = ["Classifier", "assigned_cpus", "classify_dataset", "row_to_record", "import_ray"]
