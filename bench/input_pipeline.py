"""Input pipeline benchmarks (issue 11 targets), ratios measured within one run.

    python bench/input_pipeline.py e2e   [--backend auto --precision auto --threads N]   # JPEG -> top-5 vs model only
    python bench/input_pipeline.py bulk  [--counts 1000,5000]                           # bulk classify vs model-only batch
    python bench/input_pipeline.py ray   [--count 400]                                  # 2 actors x 1 CPU vs 1 process x 2 threads

Each prints a table and, with ``--json OUT``, writes the numbers. Timings interleave the compared
paths round by round, so a noisy neighbour slows both alike.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from shared_photos import SAMPLES as IMAGES


def photos(d: Path) -> list[Path]:
    return sorted(p for p in d.glob("*") if p.suffix.lower() in (".jpg", ".jpeg"))


def load(args, **kw):
    import ipex_resnet

    return ipex_resnet.load(
        "resnet18", weights="none", backend=args.backend, precision=args.precision, threads=args.threads, **kw
    )


def upscale(path: Path) -> bytes:
    """A 1920x1080 JPEG (quality 90) upscaled from a photo."""
    from ipex_resnet.benchmarking.inputs import upscale_jpeg

    return upscale_jpeg(path.read_bytes(), quality=90)


def e2e(args) -> dict:
    import numpy as np
    import torch

    from ipex_resnet.benchmarking.pipeline import pick_photos

    clf = load(args, warmup_batch=1)
    exact = clf.preprocessor.with_mode("exact")
    fast = clf.preprocessor.with_mode("fast")
    every = photos(Path(args.images))
    small = [p.read_bytes() for p in pick_photos(every, n=len(every))]  # the 500x375 ones
    large = [upscale(p) for p in every[:4]]
    out = {
        "plan": clf.plan.describe().splitlines()[0],
        "backend": clf.plan.backend,
        "precision": clf.plan.precision,
        "threads": clf.plan.threads,
        "cases": {},
    }
    for label, data in (("500x375", small), ("1920x1080", large)):
        x = torch.from_numpy(np.stack([exact(data[0])]))
        times = {"model": [], "fast": [], "exact": []}

        def fast_e2e(b):
            clf.preprocessor = fast
            return clf.predict([b], topk=5)

        def exact_e2e(b):
            clf.preprocessor = exact
            return clf.predict([b], topk=5)

        for _ in range(3):
            clf.topk(clf(x), 5), fast_e2e(data[0]), exact_e2e(data[0])
        for r in range(args.rounds):
            b = data[r % len(data)]
            for name, fn in (
                ("model", lambda x=x: clf.topk(clf(x), 5)),
                ("fast", lambda b=b: fast_e2e(b)),
                ("exact", lambda b=b: exact_e2e(b)),
            ):
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
        med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        out["cases"][label] = {
            "images": len(data),
            "rounds": args.rounds,
            "median_ms": med,
            "ratio_fast": med["fast"] / med["model"],
            "ratio_exact": med["exact"] / med["model"],
        }
        print(
            f"{label:>9}: model {med['model']:.2f} ms, JPEG->top-5 fast {med['fast']:.2f} ms "
            f"({med['fast'] / med['model']:.2f}x), exact {med['exact']:.2f} ms ({med['exact'] / med['model']:.2f}x)"
        )
    clf.preprocessor = fast
    return out


def bulk_child(args) -> dict:
    """One bulk run of ``--count`` images in this process (JSONL written to a temp file), alternating
    with model-only batches in chunks of 1,000: throughput and peak RSS (VmHWM)."""
    from ipex_resnet.apps import bulk
    from ipex_resnet.benchmarking.pipeline import bulk_vs_model

    clf = load(args, warmup_batch=args.batch_size)
    if args.preprocess:
        clf.preprocessor = clf.preprocessor.with_mode(args.preprocess)
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl") as f:
        sink = bulk.JsonlSink(f)
        r = bulk_vs_model(
            clf,
            photos(Path(args.images)),
            None,
            count=args.count,
            batch_size=args.batch_size,
            chunk=1000,
            sink=sink,
            flush=sink.flush,
            workers=args.workers,
            overlap=args.overlap != "off",
        )
    r.update(backend=clf.plan.backend, precision=clf.plan.precision, overlap=args.overlap, workers=r["decode_workers"])
    return r


def bulk_cmd(args) -> dict:
    rows = []
    for n in [int(c) for c in args.counts.split(",")]:
        cmd = [
            sys.executable,
            __file__,
            "bulk-child",
            "--count",
            str(n),
            "--backend",
            args.backend,
            "--precision",
            args.precision,
            "--batch-size",
            str(args.batch_size),
            "--images",
            args.images,
        ]
        cmd += ["--threads", str(args.threads)] if args.threads else []
        cmd += ["--workers", str(args.workers)] if args.workers else []
        cmd += ["--preprocess", args.preprocess] if args.preprocess else []
        cmd += ["--overlap", args.overlap]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            sys.exit(proc.stderr)
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append(r)
        print(
            f"{n:>6} images: bulk {r['images_per_s']:.1f} img/s, model-only batch {r['model_only_images_per_s']:.1f} "
            f"img/s ({r['ratio']:.2f}x), peak RSS {r['peak_rss_mb']:.0f} MB (before the run "
            f"{r['rss_before_run_mb']:.0f} MB); {r['threads']} threads + {r['workers']} decode workers, overlap "
            f"{r['overlap']}; decoding {r['preprocess_ms_mean']:.2f} ms/image on one core bounds the ratio at "
            f"<= {r['bound']:.2f}x"
        )
    return {"runs": rows}


def ray_cmd(args) -> dict:
    """Steady state, models loaded and warm on both sides: 1 process x 2 threads (bulk.run) vs 2 Ray
    actors x 1 CPU (ipex_resnet.apps.ray.Classifier), the same batches; start-up reported apart."""
    import numpy as np
    import ray

    import ipex_resnet
    from ipex_resnet.apps import bulk
    from ipex_resnet.apps.ray import Classifier

    base = photos(Path(args.images))
    inputs = [str(base[i % len(base)]) for i in range(args.count)]
    batches = [inputs[i : i + args.batch_size] for i in range(0, len(inputs), args.batch_size)]
    kw = {"weights": "none", "backend": args.backend, "precision": args.precision}
    t0 = time.perf_counter()
    clf = ipex_resnet.load("resnet18", threads=2, **kw)
    t_load = time.perf_counter() - t0
    bulk.run(clf, inputs[: 2 * args.batch_size], lambda *a: None, batch_size=args.batch_size, progress=False)
    s = bulk.run(clf, inputs, lambda *a: None, batch_size=args.batch_size, progress=False)
    single = {"load_s": t_load, "images_per_s": s.images_per_s, "threads": 2, "decode_workers": bulk.default_workers(2)}
    del clf
    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        actor_cls = ray.remote(num_cpus=1)(Classifier)
        actors = [actor_cls.remote(threads=1, **kw) for _ in range(2)]
        ray.get([a.__call__.remote({"path": np.array(b)}) for a in actors for b in batches[:2]])  # load + warm
        t_start = time.perf_counter() - t0
        t1 = time.perf_counter()
        futs = [actors[i % 2].__call__.remote({"path": np.array(b)}) for i, b in enumerate(batches)]
        rows = sum(t.num_rows for t in ray.get(futs))
        multi = {
            "startup_s": t_start,
            "images_per_s": rows / (time.perf_counter() - t1),
            "actors": 2,
            "cpus_per_actor": 1,
        }
    finally:
        ray.shutdown()
    print(
        f"1 process x 2 threads (+{single['decode_workers']} decode thread): {single['images_per_s']:.1f} img/s "
        f"(load {single['load_s']:.1f} s)"
    )
    print(
        f"Ray 2 actors x 1 CPU: {multi['images_per_s']:.1f} img/s (cluster + actors + load + warm-up "
        f"{multi['startup_s']:.1f} s)"
    )
    return {
        "count": args.count,
        "batch_size": args.batch_size,
        "backend": args.backend,
        "precision": args.precision,
        "single_process": single,
        "ray": multi,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("e2e", "bulk", "bulk-child", "ray"))
    ap.add_argument("--images", default=str(IMAGES))
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=60)
    ap.add_argument("--counts", default="1000,5000")
    ap.add_argument("--count", type=int, default=400)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--preprocess", default=None)
    ap.add_argument(
        "--overlap",
        choices=("on", "off"),
        default="on",
        help="bulk: decode during inference (on, the default) or alternate batches (off)",
    )
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    fn = {"e2e": e2e, "bulk": bulk_cmd, "bulk-child": bulk_child, "ray": ray_cmd}[args.what]
    res = fn(args)
    res.update(
        {
            "what": args.what,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "cpu_count": os.cpu_count(),
            "loadavg_1m_at_end": os.getloadavg()[0],
            "note": "ratios are within one run; absolute times drift between runs",
        }
    )
    if args.what == "bulk-child":
        print(json.dumps(res))
    elif args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
