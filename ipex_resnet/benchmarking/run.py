"""``ipex-resnet bench``: measure every path of the matrix and return one JSON SKU report.

Order: (1) each path alone in a fresh process and each engine's cold start (the subprocess phase,
while this process holds no runtime; it also fills the artifact cache), then (2) every path loaded
here and timed interleaved, round-robin, at each batch size; peak RSS; end to end for our paths.
"""

from __future__ import annotations

import functools
import platform
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from ipex_resnet.benchmarking.matrix import REFERENCE, matrix
from ipex_resnet.benchmarking.options import Settings
from ipex_resnet.benchmarking.paths import Built, Workspace, build_path
from ipex_resnet.benchmarking.report import REPORT_SCHEMA, add_ratios, targets
from ipex_resnet.benchmarking.timing import rounds_for, slowdown_fraction, summarize, time_interleaved
from ipex_resnet.errors import ConfigError, first_line
from ipex_resnet.models.spec import ModelSpec


class Progress:
    """One-line progress on stderr (rewritten in place on a terminal, plain lines otherwise)."""

    def __init__(self, stream=None, enabled: bool = True):
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.t0 = time.perf_counter()

    def step(self, msg: str) -> None:
        if not self.enabled:
            return
        line = f"[{time.perf_counter() - self.t0:6.1f}s] {msg}"
        self.stream.write(("\r\033[K" + line) if self.tty else line + "\n")
        self.stream.flush()

    def tick(self, msg: str, done: int, total: int) -> None:
        if self.tty or done == total:
            self.step(f"{msg} {done}/{total}")

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()


def run_report(s: Settings, progress: Progress | None = None, baseline: Sequence[Mapping] | None = None) -> dict:
    """Measure every path of the matrix (interleaved and alone), cold starts, and return the report.
    ``baseline``: the ``--gate`` baseline's entries (the gate's timing takes more processes while a check
    against it is undecided)."""
    from ipex_resnet.benchmarking.inputs import jpegs
    from ipex_resnet.core.api import plan_for
    from ipex_resnet.hardware.cpu import probe

    progress = progress or Progress(enabled=False)
    cpu = probe()
    auto_plan = plan_for(cpu, "auto", "auto", s.threads)
    threads = s.threads or auto_plan.threads
    paths, skipped = matrix(cpu, s.backends, s.precisions, emulated_bf16=s.emulated_bf16, peers=s.peers)
    ours = [p.name for p in paths if not p.peer]
    if s.scenarios and s.scenario_path and s.scenario_path not in ours:
        raise ConfigError(f"--scenario-path {s.scenario_path!r} is not a path this run measures: {', '.join(ours)}")
    small = jpegs(s.images, 32)
    ws = Workspace(s.model, small)
    crop = ws.crop
    results: dict[str, dict] = {
        p.name: {"kind": p.kind, "backend": p.backend, "precision": p.precision, "latency": {}, "throughput": {}}
        for p in paths
    }

    # -- 1. subprocess phase: alone, cold start ---------------------------------------------------
    _measure_alone(s, paths, ws, threads, results, progress)
    cold = _cold_starts(s, paths, ws, small, threads, progress)
    gate_times = _gate_timing(s, paths, ws, progress, baseline)

    # -- 2. interleaved, in this process ----------------------------------------------------------
    slow = slowdown_fraction()
    built = _load_paths(paths, ws, threads, slow, skipped, results, progress)
    runners = {name: b.runner for name, b in built.items()}
    _time_batches(s, runners, crop, results, progress)
    _measure_memory(s, runners, crop, results, progress)
    cases, pipeline = _measure_inputs(s, built, results, auto_plan, small, ws, progress)
    if s.labels:
        _measure_accuracy(s.labels, s.model, built, results, progress)
    doc = _document(s, cpu, auto_plan, threads, slow, crop, small, cases)
    if gate_times is not None:
        doc["gate"] = gate_times
    if s.scenarios:
        doc["scenarios"] = _measure_scenarios(s, built, results, small, scenario_logs(s, doc), progress)
    progress.step("done")
    progress.close()
    ws.cleanup()
    results = {n: r for n, r in results.items() if r["latency"] or r.get("alone", {}).get("latency")}

    add_ratios(results, s.batch_sizes)
    doc.update(reference=REFERENCE, paths=results, cold_start=cold, input_pipeline=pipeline, skipped=skipped)
    doc["targets"] = targets(doc)
    return doc


def _measure_accuracy(labels: str, model: ModelSpec, built: dict, results: dict, progress: Progress) -> None:
    """Top-1/top-5 against ``labels`` for every built path, into ``results[name]["accuracy"]``."""
    from ipex_resnet.benchmarking import accuracy
    from ipex_resnet.benchmarking.inputs import resolved
    from ipex_resnet.core.evaluate import read_labels
    from ipex_resnet.imaging import Preprocessor

    progress.step("accuracy against the labels")
    loaded = resolved(model)
    samples = read_labels(labels, loaded.categories)
    exact = Preprocessor.from_preset(loaded.transforms, mode="exact")
    for name, acc in accuracy.measure(built, samples, exact).items():
        results[name]["accuracy"] = acc


def _measure_scenarios(
    s: Settings, built: dict, results: dict, small: list[bytes], logs: Path, progress: Progress
) -> dict:
    """The MLPerf-style scenarios on one path (LoadGen's logs under ``logs``); a failure is recorded, not raised."""
    from ipex_resnet.benchmarking.scenarios import run_scenarios

    try:
        return run_scenarios(s, built, results, small, logs, progress)
    except ConfigError:
        raise
    except Exception as exc:
        return {"error": first_line(exc), "logs": str(logs)}


def scenario_logs(s: Settings, doc: dict) -> Path:
    """Where LoadGen's logs go: beside the report, ``<report name>-loadgen/``."""
    out = Path(s.output) if s.output else default_output(doc)
    return out.with_name(out.stem + "-loadgen")


def _measure_alone(s: Settings, paths, ws: Workspace, threads: int, results: dict, progress: Progress) -> None:
    """Each path alone in a fresh process, into ``results[name]["alone"]``."""
    from ipex_resnet.benchmarking.isolated import measure_alone

    if s.alone_budget <= 0:
        return
    for i, spec in enumerate(paths, 1):
        progress.step(f"alone in a fresh process: {spec.name} ({i}/{len(paths)})")
        onnx = None
        if spec.peer:
            try:
                onnx = ws.onnx_path
            except Exception as exc:
                results[spec.name]["alone"] = {"error": f"ONNX export failed: {first_line(exc)}"}
                continue
        results[spec.name]["alone"] = measure_alone(
            spec,
            model=s.model,
            threads=threads,
            budget_s=s.alone_budget,
            batch_sizes=s.batch_sizes,
            crop=ws.crop,
            onnx_path=onnx,
            images=s.images,
        )


def _cold_starts(s: Settings, paths, ws: Workspace, small, threads: int, progress: Progress) -> dict[str, dict]:
    """The cold start of each of our engines (peers excluded), by engine name."""
    from ipex_resnet.benchmarking.coldstart import cold_start, write_image

    cold: dict[str, dict] = {}
    if s.cold_start:
        image = write_image(ws.dir, small[0])
        for engine in dict.fromkeys(p.backend for p in paths if not p.peer):
            progress.step(f"cold start (classify, warm cache): {engine}")
            cold[engine] = cold_start(engine, image, model=s.model, threads=threads)
    return cold


def _gate_timing(
    s: Settings, paths, ws: Workspace, progress: Progress, baseline: Sequence[Mapping] | None
) -> dict | None:
    """With ``--gate`` or ``--save-baseline``: the gate's ratios from paired calls in fresh single-threaded processes
    (:mod:`.gate_timing`), measured while this process holds no runtime; more processes, within
    ``--gate-budget`` per path, while the noise leaves a check against ``baseline`` (or, saving, the
    baseline's own floor) undecided."""
    from ipex_resnet.benchmarking import gate_timing

    if not (s.gate or s.save_baseline):
        return None
    n_paths = max(1, sum(1 for p in paths if not p.peer and p.name != REFERENCE))
    return gate_timing.measure(
        paths,
        model=s.model,
        images=s.images,
        crop=ws.crop,
        sizes=gate_timing.batch_sizes(s.batch_sizes),
        rounds=s.gate_rounds,
        processes=s.gate_processes,
        step=progress.step,
        budget_s=s.gate_budget * n_paths,
        more=lambda ratios: gate_timing.undecided(ratios, baseline, s.time_tolerance),
    )


def _load_paths(
    paths, ws: Workspace, threads: int, slow: float, skipped: dict, results: dict, progress: Progress
) -> dict[str, Built]:
    """Load every path in this process; one that fails (other than the reference) is skipped."""
    built: dict[str, Built] = {}
    for i, spec in enumerate(paths, 1):
        progress.step(f"loading {spec.name} ({i}/{len(paths)})")
        try:
            built[spec.name] = build_path(spec, ws, threads, slowdown=slow)
        except Exception as exc:
            if spec.name == REFERENCE:
                raise
            skipped[spec.name] = f"failed to load: {first_line(exc)}"
            results[spec.name]["error"] = skipped[spec.name]
    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(threads)
    for name, b in built.items():
        results[name].update(
            detail=b.detail,
            plan=b.plan,
            load_s=b.load_s,
            load_peak_rss_mb=b.load_peak_rss_mb,
            load_delta_rss_mb=b.load_delta_rss_mb,
        )
    return built


def _time_batches(s: Settings, runners: dict, crop: int, results: dict, progress: Progress) -> None:
    """Latency and throughput of every runner at each batch size, timed interleaved round-robin."""
    from ipex_resnet.benchmarking.inputs import batch

    for bs in s.batch_sizes:
        x = batch(bs, crop, seed=bs)
        per_round = 0.0
        for name, fn in runners.items():  # warm up, and estimate the cost of a round
            progress.step(f"warming up batch {bs}: {name}")
            fn(x)
            t0 = time.perf_counter()
            fn(x)
            per_round += time.perf_counter() - t0
        calls = 4 if bs == 1 else 1
        rounds = rounds_for(per_round * (calls + 1), s.budget, 5 if bs == 1 else 3, 300)
        times = time_interleaved(
            runners,
            x,
            rounds=rounds,
            calls_per_round=calls,
            switch_warmup=1,
            progress=functools.partial(progress.tick, f"timing batch {bs}:"),
        )
        for name, samples in times.items():
            stats = summarize(samples)
            results[name]["latency"][str(bs)] = stats
            results[name]["throughput"][str(bs)] = bs / (stats["p50_ms"] / 1e3)


def _measure_memory(s: Settings, runners: dict, crop: int, results: dict, progress: Progress) -> None:
    """Peak RSS during inference at the largest batch, one path at a time."""
    from ipex_resnet.benchmarking.inputs import batch
    from ipex_resnet.benchmarking.memory import PeakRSS

    xb = batch(max(s.batch_sizes), crop, seed=99)
    for name, fn in runners.items():
        progress.step(f"memory at batch {xb.shape[0]}: {name}")
        with PeakRSS() as mem:
            fn(xb)
        results[name]["infer_peak_rss_mb"] = mem.peak_mb
        results[name]["infer_delta_rss_mb"] = mem.delta_mb


def _measure_inputs(
    s: Settings, built: dict[str, Built], results: dict, plan, small, ws: Workspace, progress: Progress
) -> tuple[dict, dict]:
    """End to end for our paths, then the input pipeline's costs; returns (cases, pipeline section)."""
    from ipex_resnet.benchmarking.inputs import upscale_jpeg
    from ipex_resnet.benchmarking.pipeline import bulk_vs_model, input_costs, measure_e2e, pick_photos

    cases: dict[str, Sequence[bytes]] = {"photo": pick_photos(small), "1920x1080": [upscale_jpeg(small[0])]}
    reps = 2 if s.quick else 5
    for name, b in built.items():  # end to end: JPEG bytes -> top-5 (peers have no preprocessing)
        if b.classifier is not None:
            progress.step(f"end to end (JPEG -> top-5): {name}")
            results[name]["end_to_end"] = measure_e2e(b.classifier, cases, reps)
    pipe_path = _pipeline_path(built, results, plan)
    pipeline: dict = {"path": pipe_path}
    if pipe_path:
        clf = built[pipe_path].classifier
        progress.step("input pipeline: preprocessing and decode cost")
        pipeline["costs"] = input_costs(clf.preprocessor, cases, reps=reps * 2)
        progress.step(f"input pipeline: bulk classify vs model-only, {pipe_path}")
        pipeline["bulk"] = bulk_vs_model(clf, small, ws.dir / "bulk", count=64 if s.quick else 320)
        progress.step(f"streams x threads: {pipe_path}")
        pipeline["streams"] = _measure_streams(built[pipe_path], ws, clf.plan.threads)
    return cases, pipeline


def _measure_streams(b: Built, ws: Workspace, threads: int) -> dict:
    from ipex_resnet.benchmarking import streams

    try:
        return streams.measure(b, ws, threads)
    except Exception as exc:
        return {"error": first_line(exc)}


def _document(s: Settings, cpu, plan, threads: int, slow: float, crop: int, small, cases: dict) -> dict:
    """The report's header: the machine, versions, settings and inputs (the measurements go in after)."""
    from ipex_resnet.benchmarking.machine import machine_key, thread_settings, versions

    vers = versions()
    return {
        "schema": REPORT_SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "model": s.model.model,
        "preset": s.model.preset_dict,
        "weights": "none (random init)" if s.model.random_init else s.model.weights,
        "cpu": cpu.to_dict(),
        "machine_key": machine_key(cpu, vers, threads),
        "platform": platform.platform(),
        "versions": vers,
        "threads": {**thread_settings(), "used": threads},
        "plan": plan.to_dict(),
        "batch_sizes": list(s.batch_sizes),
        "quick": s.quick,
        "budgets_s": {"interleaved_per_batch": s.budget, "alone_per_path": s.alone_budget},
        "injected_slowdown": slow,
        "price_per_hour_usd": s.price_per_hour,
        "inputs": {
            "crop_size": crop,
            "synthetic_tensor": f"standard normal N x 3 x {crop} x {crop} (float32)",
            "jpeg": f"{len(small)} JPEGs from {s.images}" if s.images else "4 synthetic 500x375 JPEGs",
            "e2e_photos": f"{len(cases['photo'])} of them, 500x375 where there are such",
            "large_jpeg": "1920x1080 JPEG upscaled from the first",
        },
    }


def _pipeline_path(built: dict[str, Built], results: dict, plan) -> str | None:
    """The path the input-pipeline targets are judged on: the planned one, else our fastest at b1."""
    ours = {n: b for n, b in built.items() if b.classifier is not None and "end_to_end" in results[n]}
    planned = f"{plan.backend}/{plan.precision}"
    if planned in ours:
        return planned
    timed = [(results[n]["latency"].get("1", {}).get("p50_ms", float("inf")), n) for n in ours]
    return min(timed)[1] if timed else None


def default_output(doc: dict) -> Path:
    return Path(f"bench-report-{doc['machine_key']}.json")


__all__ = ["Progress", "default_output", "run_report", "scenario_logs"]
