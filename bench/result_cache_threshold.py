"""Evidence for the perceptual result cache: its Hamming threshold, and what a hit costs.

1. Threshold: perceptual hashes (``ipex_resnet.core.result_cache``: imagehash pHash of the image decoded by
   the bounded decoder) of the 200 distinct shared photos; the distance of every pair (200x199/2) must
   stay above the threshold (0 false hits), and each photo re-encoded at JPEG quality 75 and resized to
   80% must stay within it (>= 95% hits). Prints both distributions and the chosen threshold.
2. Hit cost (``--timing``): JPEG -> top-5 through ``Classifier.predict`` on one path (default ONNX Runtime
   FP32, random-weight ResNet-18) against an exact hit and a perceptual hit of the same classifier, as
   ratios measured in one run.

Writes ``docs/result-cache.json``. The photos are read where they are (``../shared/data/imagenet-samples``).

    python bench/result_cache_threshold.py [--timing] [--backend onnxruntime]
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

from PIL import Image
from shared_photos import SAMPLES

from ipex_resnet.core.result_cache import DEFAULT_THRESHOLD, decode_for_hash, perceptual_hash
from ipex_resnet.imaging import DEFAULT_MAX_PIXELS

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "docs" / "result-cache.json"


def phash_of(data: bytes) -> int:
    return perceptual_hash(decode_for_hash(data, max_pixels=DEFAULT_MAX_PIXELS, name="x"))


def variant(data: bytes, quality: int = 75, scale: float = 0.8) -> bytes:
    """The photo resized to ``scale`` and re-encoded as JPEG at ``quality``."""
    img = Image.open(io.BytesIO(data)).convert("RGB")
    w, h = img.size
    img = img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def histogram(values: list[int]) -> dict[str, int]:
    c = Counter(values)
    return {str(k): c[k] for k in sorted(c)}


def threshold_evidence(paths: list[Path]) -> dict:
    originals = [p.read_bytes() for p in paths]
    hashes = [phash_of(d) for d in originals]
    pairs = [(hashes[i] ^ hashes[j]).bit_count() for i in range(len(hashes)) for j in range(i + 1, len(hashes))]
    copies = {}
    for q, s in ((75, 0.8), (90, 1.0), (60, 0.5)):
        copies[f"q{q}_scale{s:g}"] = [(h ^ phash_of(variant(d, q, s))).bit_count() for d, h in zip(originals, hashes)]
    main = copies["q75_scale0.8"]
    # the largest threshold with no false hit, the smallest with every copy hit; pick the midpoint
    lo, hi = max(main), min(pairs) - 1
    chosen = DEFAULT_THRESHOLD
    out = {
        "photos": len(paths),
        "pairs": len(pairs),
        "hash": "imagehash.phash 8x8 (64 bits), bounded decode at reduced JPEG scale (short side >= 64)",
        "distinct_pairs": {
            "min": min(pairs),
            "p1": sorted(pairs)[len(pairs) // 100],
            "median": statistics.median(pairs),
            "histogram": histogram(pairs),
        },
        "copies": {
            name: {"max": max(v), "mean": round(statistics.mean(v), 2), "histogram": histogram(v)}
            for name, v in copies.items()
        },
        "safe_range": [lo, hi],
        "threshold": chosen,
        "false_hits": sum(d <= chosen for d in pairs),
        "hit_rate_q75_scale0.8": sum(d <= chosen for d in main) / len(main),
        "hit_rate_by_copy": {name: sum(d <= chosen for d in v) / len(v) for name, v in copies.items()},
    }
    print(
        f"distinct pairs ({len(pairs)}): min {min(pairs)}, 1st percentile {out['distinct_pairs']['p1']}, "
        f"median {out['distinct_pairs']['median']}"
    )
    print("  histogram (distance: pairs), lowest 12:", dict(list(out["distinct_pairs"]["histogram"].items())[:12]))
    for name, v in copies.items():
        print(f"copies {name}: max {max(v)}, mean {statistics.mean(v):.2f}, histogram {histogram(v)}")
    print(
        f"safe thresholds: {lo}..{hi}; chosen {chosen}: {out['false_hits']} false hits among {len(pairs)} pairs, "
        f"{out['hit_rate_q75_scale0.8']:.1%} of q75/80% copies hit"
    )
    return out


def best_of(fn, n: int, repeat: int = 5) -> float:
    """Median over ``repeat`` rounds of the mean seconds per call over ``n`` calls."""
    rounds = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        rounds.append((time.perf_counter() - t0) / n)
    return statistics.median(rounds)


def timing(paths: list[Path], backend: str) -> dict:
    import ipex_resnet

    datas = [p.read_bytes() for p in paths[:20]]
    clf = ipex_resnet.load("resnet18", weights="none", backend=backend, precision="fp32", measure=False)
    ex = ipex_resnet.load(
        "resnet18", weights="none", backend=backend, precision="fp32", measure=False, result_cache="exact"
    )
    pc = ipex_resnet.load(
        "resnet18", weights="none", backend=backend, precision="fp32", measure=False, result_cache="perceptual"
    )
    for c in (ex, pc):
        for d in datas:
            c.predict([d], topk=5)  # fill
    it = {"full": iter(()), "exact": iter(()), "perceptual": iter(())}

    def nxt(name):
        try:
            return next(it[name])
        except StopIteration:
            it[name] = iter(datas)
            return next(it[name])

    t_full = best_of(lambda: clf.predict([nxt("full")], topk=5), 20)
    t_exact = best_of(lambda: ex.predict([nxt("exact")], topk=5), 200)
    t_perc = best_of(lambda: pc.predict([nxt("perceptual")], topk=5), 40)
    assert ex.result_cache.stats["hit"] >= 1000 and pc.result_cache.stats["hit"] >= 200
    out = {
        "path": f"{clf.plan.backend} {clf.plan.precision}, resnet18 random weights, threads {clf.plan.threads}",
        "jpeg_to_top5_ms": round(t_full * 1e3, 3),
        "exact_hit_ms": round(t_exact * 1e3, 4),
        "perceptual_hit_ms": round(t_perc * 1e3, 3),
        "exact_ratio": round(t_exact / t_full, 4),
        "perceptual_ratio": round(t_perc / t_full, 3),
        "photos": len(datas),
    }
    print(
        f"JPEG -> top-5 ({out['path']}): {out['jpeg_to_top5_ms']} ms; exact hit {out['exact_hit_ms']} ms "
        f"({out['exact_ratio']}x); perceptual hit {out['perceptual_hit_ms']} ms ({out['perceptual_ratio']}x)"
    )
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--timing", action="store_true", help="also time hits against JPEG -> top-5")
    ap.add_argument("--backend", default="onnxruntime")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    paths = sorted(SAMPLES.glob("*.JPEG"))
    if len(paths) < 2:
        print(f"no photos in {SAMPLES}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    doc = {"threshold": threshold_evidence(paths)}
    if args.timing:
        doc["timing"] = timing(paths, args.backend)
    doc["seconds"] = round(time.perf_counter() - t0, 1)
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out} ({doc['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
