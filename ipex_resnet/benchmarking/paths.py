"""Loading one path of the matrix: an ipex_resnet engine through the public ``load()`` (and so the
artifact cache), or a peer row from the shared ONNX export; with load time and peak RSS."""

from __future__ import annotations

import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ipex_resnet.benchmarking.matrix import REFERENCE, PathSpec
from ipex_resnet.benchmarking.memory import PeakRSS
from ipex_resnet.benchmarking.timing import Runner, inject_slowdown
from ipex_resnet.models.spec import ModelSpec


@dataclass
class Built:
    spec: PathSpec
    runner: Runner
    load_s: float
    load_peak_rss_mb: float
    load_delta_rss_mb: float
    plan: dict | None = None
    classifier: Any = None
    detail: str = ""


class Workspace:
    """What several paths share, made once and lazily: the FP32 module and its ONNX export (peers),
    the crop size, and the INT8 calibration batches (from ``images``: a list of JPEG bytes)."""

    def __init__(
        self,
        model: ModelSpec | None = None,
        images: list[bytes] | None = None,
        directory: str | None = None,
        *,
        crop: int | None = None,
        onnx_path: str | Path | None = None,
    ):
        self.model = model or ModelSpec()
        self.images = images
        self._crop = crop
        self._tmp = None if directory else tempfile.TemporaryDirectory(prefix="ipex_resnet_bench_")
        self.dir = Path(directory) if directory else Path(self._tmp.name if self._tmp else ".")
        self._module: Any = None
        self._calibration: list | None = None
        self._onnx = Path(onnx_path) if onnx_path else None

    @property
    def crop(self) -> int:
        if self._crop is None:
            from ipex_resnet.benchmarking.inputs import crop_size

            self._crop = crop_size(self.model)
        return self._crop

    def get_module(self) -> Any:
        return self.module

    @property
    def module(self) -> Any:
        if self._module is None:
            from ipex_resnet.benchmarking.inputs import resolved

            self._module = resolved(self.model).module
        return self._module

    @property
    def onnx_path(self) -> Path:
        if self._onnx is None:
            from ipex_resnet.export.onnx import export_onnx

            self._onnx = export_onnx(self.module, self.dir / "model.onnx", self.crop)
        return self._onnx

    def calibration(self) -> list:
        if self._calibration is None:
            from ipex_resnet.benchmarking.inputs import calibration_batches, jpegs

            self._calibration = calibration_batches(self.model, self.images or jpegs(None))
        return self._calibration

    def int8_kwargs(self, precision: str) -> dict[str, Any]:
        """``load()``'s INT8 arguments for a path at ``precision``: the workspace's images as calibration,
        its accuracy accepted (timed whatever it is: ``--labels`` reports it beside)."""
        if precision != "int8":
            return {}
        from ipex_resnet.benchmarking.inputs import jpegs

        return {"calibration": self.images or jpegs(None), "accept_accuracy": True}

    def load(self, backend: str, precision: str, threads: int | None, streams: int | str | None = "auto") -> Any:
        """The workspace's model through the public ``load()`` (so the artifact cache), warnings silenced."""
        from ipex_resnet.core.api import load

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return load(
                self.model.model,
                **self.model.load_kwargs(),
                backend=backend,
                precision=precision,
                threads=threads,
                streams=streams,
                measure=False,
                **self.int8_kwargs(precision),
            )

    def cleanup(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()


def build_path(spec: PathSpec, ws: Workspace, threads: int | None = None, *, slowdown: float = 0.0) -> Built:
    """Load one path (the workspace's model and weights), warmed up, with its load time and peak RSS.

    ``slowdown`` is applied to every path but the eager FP32 reference (see ``inject_slowdown``).
    """
    from ipex_resnet.benchmarking import peers
    from ipex_resnet.core.api import plan_for

    clf, plan, detail = None, None, ""
    threads = threads or plan_for().threads
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        if spec.peer:
            from ipex_resnet.benchmarking.inputs import batch

            row = peers.REGISTRY[f"{spec.backend}/{spec.precision}"]
            src = peers.PeerInput(ws.get_module, ws.onnx_path, ws.crop, threads, ws.dir, ws.calibration)
            runner = peers.prepare(row, src)
            runner(batch(1, ws.crop))
            detail = row.status()[1]
        else:
            clf = ws.load(spec.backend, spec.precision, threads)
            runner = clf
            plan = clf.plan.to_dict()
            detail = clf.plan.reasons.get("backend", "")
        load_s = time.perf_counter() - t0
    if slowdown and spec.name != REFERENCE:
        runner = inject_slowdown(runner, slowdown)
    return Built(spec, runner, load_s, mem.peak_mb, mem.delta_mb, plan, clf, detail)


__all__ = ["Built", "Workspace", "build_path"]
