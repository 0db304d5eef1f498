"""INT8 vs FP32/BF16 per engine, and vs the INT8 peers: latency, throughput and agreement, one run.

    python bench/int8_table.py --threads 1 --output docs/int8-latest-1thread.json

Model: the tests' BN-calibrated seeded ResNet-18 (no pretrained weights here). Images: the 200 real
photos; INT8 is calibrated on one half (``--calibration`` images of it) and judged on the other
half against FP32 eager. Rows, for what this stack can run:

* our FP32/BF16 paths as ``ipex_resnet.load`` builds them (ipex, inductor);
* our INT8 artifacts (``ipex_resnet.quantization``) loaded as the engines load them;
* OpenVINO and ONNX Runtime FP32/BF16 and their INT8 artifacts (the engines' files);
* the INT8 peers (``quantization.peers``: NNCF and ORT QDQ used as their docs show).

Timing interleaves every row in each round (so machine noise hits all rows alike): batch-1
latency (median ms) and batch-32 throughput (median img/s). Report ratios, not absolutes.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from shared_photos import SAMPLES

sys.path.insert(0, str(REPO / "tests"))  # the tests' BN-calibrated ResNet-18
from calibrated import bn_calibrated_resnet18


class Table:
    """What every row shares: the model and its checkpoint, the calibration and held-out batches, the FP32
    reference logits, the CPU, and the rows themselves (``run`` is a numpy NCHW -> logits callable)."""

    def __init__(self, threads: int, calibration_count: int):
        import numpy as np
        import torch
        from torchvision.models import ResNet18_Weights

        from ipex_resnet.hardware.cpu import probe
        from ipex_resnet.imaging import Preprocessor
        from ipex_resnet.quantization import calibration

        self.threads = threads
        self.cpu = probe()
        self.bf16_native = self.cpu.has_native_bf16
        with open(SAMPLES / "labels.csv") as f:
            photos = [SAMPLES / r["file"] for r in csv.DictReader(f)]
        pre = Preprocessor.from_preset(ResNet18_Weights.DEFAULT.transforms())
        self.model = bn_calibrated_resnet18(photos, pre)
        calib_paths, held_paths = calibration.split(photos, 0.5)
        self.calib_items = calibration.collect(calib_paths, count=calibration_count).items
        self.calib = calibration.batches(self.calib_items, pre, batch_size=32, progress=False)
        self.held = np.concatenate(calibration.batches(held_paths, pre, progress=False))
        with torch.no_grad():
            self.ref = self.model(torch.from_numpy(self.held)).numpy()
        self.work = Path(tempfile.mkdtemp(prefix="ipex_resnet_int8_table_"))
        self.weights = self.work / "resnet18-bn.pth"
        torch.save(self.model.state_dict(), self.weights)
        self.rows: dict[str, dict] = {}

    def add(self, name, kind, engine, precision, run) -> dict:
        self.rows[name] = {"kind": kind, "engine": engine, "precision": precision, "run": run}
        return self.rows[name]

    def quantize(self, engine: str, out_name: str, bf16: bool = False) -> dict:
        from ipex_resnet.quantization import engine_module

        out = self.work / out_name
        out.mkdir()
        return engine_module(engine).quantize(
            self.model, self.calib, out, threads=self.threads, example=self.held[:1], bf16=bf16
        ) | {"dir": out}


def torch_rows(t: Table) -> None:
    """ipex and inductor: FP32/BF16 through ipex_resnet.load, and their INT8 artifacts."""
    import torch

    import ipex_resnet
    import ipex_resnet.engines
    from ipex_resnet.quantization import engine_module

    sys.path.insert(0, str(REPO / "tests"))
    from int8_loaders import load as load_int8

    def torch_path(backend, precision):
        clf = ipex_resnet.load(
            "resnet18", weights=str(t.weights), backend=backend, precision=precision, threads=t.threads
        )
        return lambda x: clf(torch.from_numpy(x)).numpy()

    for backend in ("ipex", "inductor"):
        if not ipex_resnet.engines.get(backend).status()[0]:
            continue
        for precision in ipex_resnet.engines.get(backend).precisions(t.cpu):
            if precision != "int8":
                t.add(f"{backend} {precision}", "ours", backend, precision, torch_path(backend, precision))
        if engine_module(backend).status()[0]:
            for bf16 in (False, True) if t.bf16_native else (False,):
                start = time.perf_counter()
                info = t.quantize(backend, f"{backend}-int8{'-bf16' if bf16 else ''}", bf16)
                row = t.add(
                    f"{backend} int8{'+bf16' if bf16 else ''}",
                    "ours",
                    backend,
                    "int8",
                    load_int8(backend, info["dir"], t.threads),
                )
                row.update(quantize_s=round(time.perf_counter() - start, 1), tool=info["tool"])


def openvino_rows(t: Table, fp32_onnx: Path) -> None:
    import numpy as np
    import openvino as ov

    from ipex_resnet.quantization import peers

    core = ov.Core()

    def ov_run(path, hint):
        req = core.compile_model(
            str(path),
            "CPU",
            {"INFERENCE_NUM_THREADS": t.threads, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": hint},
        ).create_infer_request()

        def run(x):
            req.infer({0: np.ascontiguousarray(x)})
            return req.get_output_tensor(0).data.copy()

        return run

    t.add("openvino fp32", "ours", "openvino", "fp32", ov_run(fp32_onnx, "f32"))
    if t.bf16_native:
        t.add("openvino bf16", "ours", "openvino", "bf16", ov_run(fp32_onnx, "bf16"))
    out = t.quantize("openvino", "openvino-int8")["dir"]
    t.add("openvino int8", "ours", "openvino", "int8", ov_run(out / "model.xml", "bf16" if t.bf16_native else "f32"))
    t.add(
        "peer openvino+nncf int8",
        "peer",
        "openvino",
        "int8",
        peers.openvino_int8(t.model, t.calib, threads=t.threads, workdir=t.work / "peer-ov"),
    )


def onnxruntime_rows(t: Table, fp32_onnx: Path) -> None:
    import numpy as np
    import onnxruntime as ort

    from ipex_resnet.quantization import peers

    def ort_run(path):
        o = ort.SessionOptions()
        o.intra_op_num_threads = t.threads
        o.inter_op_num_threads = 1
        s = ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"])
        return lambda x: s.run(None, {"input": np.ascontiguousarray(x)})[0]

    t.add("onnxruntime fp32", "ours", "onnxruntime", "fp32", ort_run(fp32_onnx))
    out = t.quantize("onnxruntime", "onnxruntime-int8")["dir"]
    t.add("onnxruntime int8", "ours", "onnxruntime", "int8", ort_run(out / "model.onnx"))
    t.add(
        "peer onnxruntime qdq int8",
        "peer",
        "onnxruntime",
        "int8",
        peers.onnxruntime_int8(t.model, t.calib, threads=t.threads, workdir=t.work / "peer-ort"),
    )


def measure(t: Table, rounds: int) -> None:
    """Agreement with FP32 eager on the held-out half; b1 latency and b32 throughput, interleaved."""
    import numpy as np

    from ipex_resnet.quantization import accuracy

    held, rows = t.held, t.rows
    for row in rows.values():
        logits = np.concatenate([row["run"](held[i : i + 25]) for i in range(0, len(held), 25)])
        row["agreement"] = accuracy.agreement(logits, t.ref).as_dict()
    x1, x32 = np.ascontiguousarray(held[:1]), np.ascontiguousarray(held[:32])
    lat = {n: [] for n in rows}
    thr = {n: [] for n in rows}
    for row in rows.values():
        row["run"](x1), row["run"](x32), row["run"](x1)
    for _ in range(rounds):
        for name, row in rows.items():
            for _ in range(5):
                start = time.perf_counter()
                row["run"](x1)
                lat[name].append(time.perf_counter() - start)
            start = time.perf_counter()
            row["run"](x32)
            thr[name].append(32 / (time.perf_counter() - start))
    for name, row in rows.items():
        row["b1_ms"] = round(float(np.median(lat[name])) * 1e3, 2)
        row["b32_img_s"] = round(float(np.median(thr[name])), 1)
        row["b1_min_ms"] = round(float(np.min(lat[name])) * 1e3, 2)  # least disturbed by other load
        row["b32_max_img_s"] = round(float(np.max(thr[name])), 1)
        del row["run"]


def summarize(rows: dict[str, dict]) -> dict:
    """Our best INT8 row against the best INT8 peer and our best BF16 row, by median and by best times."""

    def best(kind, precision, key, engines=None):
        c = [
            (n, r)
            for n, r in rows.items()
            if r["kind"] == kind and r["precision"] == precision and (engines is None or r["engine"] in engines)
        ]
        if not c:
            return None
        pick = min if key.startswith("b1") else max
        return pick(c, key=lambda nr: nr[1][key])

    summary = {}
    for stat, lk, tk in (("median", "b1_ms", "b32_img_s"), ("best", "b1_min_ms", "b32_max_img_s")):
        for label, engines in (("all our engines", None), ("our torch engines", ("ipex", "inductor"))):
            i8_1, i8_32 = best("ours", "int8", lk, engines), best("ours", "int8", tk, engines)
            p1, p32 = best("peer", "int8", lk), best("peer", "int8", tk)
            b1 = best("ours", "bf16", lk, engines)
            if i8_1 and p1:
                summary[f"{label}, {stat}"] = {
                    "best int8 b1": i8_1[0],
                    "best peer b1": p1[0],
                    "b1 latency / best int8 peer": round(i8_1[1][lk] / p1[1][lk], 3),
                    "b1 latency / best bf16": round(i8_1[1][lk] / b1[1][lk], 3) if b1 else None,
                    "best bf16 b1": b1[0] if b1 else None,
                    "best int8 b32": i8_32[0],
                    "b32 throughput / best int8 peer": round(i8_32[1][tk] / p32[1][tk], 3),
                }
    return summary


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--calibration", type=int, default=100, help="calibration images (of the first half)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--output", type=Path, default=None)
    args = ap.parse_args()

    import torch

    from ipex_resnet.export.onnx import export_onnx
    from ipex_resnet.quantization import engine_module

    warnings.simplefilter("ignore")
    torch.set_num_threads(args.threads)
    t = Table(args.threads, args.calibration)
    torch_rows(t)
    fp32_onnx = export_onnx(t.model, t.work / "fp32.onnx")
    if engine_module("openvino").status()[0]:
        openvino_rows(t, fp32_onnx)
    if engine_module("onnxruntime").status()[0]:
        onnxruntime_rows(t, fp32_onnx)
    measure(t, args.rounds)
    summary = summarize(t.rows)
    print(f"threads={args.threads}  cpu: {t.cpu.describe().splitlines()[0]}  torch {torch.__version__}")
    print(
        f"{'row':28} {'b1 ms':>7} {'(min)':>7} {'b32 img/s':>10} {'(max)':>7} {'top-1 agr':>9} {'top-5 ovl':>9} "
        f"{'rel err':>8}"
    )
    for name, r in t.rows.items():
        a = r["agreement"]
        print(
            f"{name:28} {r['b1_ms']:7.2f} {r['b1_min_ms']:7.2f} {r['b32_img_s']:10.1f} {r['b32_max_img_s']:7.1f} "
            f"{a['top1']:9.3f} {a['top5']:9.3f} {a['rel_error']:8.4f}"
        )
    print(json.dumps(summary, indent=2))
    if args.output:
        args.output.write_text(
            json.dumps(
                {
                    "threads": args.threads,
                    "torch": torch.__version__,
                    "calibration_images": len(t.calib_items),
                    "held_out_images": len(t.held),
                    "rows": t.rows,
                    "summary": summary,
                },
                indent=2,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
