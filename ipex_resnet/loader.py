"""load(), optimize() and plan_for(): probe -> plan -> artifact (cached) -> Classifier.

A warm start never touches torchvision: the artifact's ``meta.json`` carries the categories and the
preprocessing preset, and a lean engine (OpenVINO, ONNX Runtime) needs no torch either. Torch is
imported only to build an artifact or to run a torch engine.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sys
import warnings
from pathlib import Path

from . import engines
from .cache import ArtifactCache, enabled as cache_enabled
from .classifier import Classifier, PlanWarning
from .cpu import CPUInfo, probe
from .engines.base import dist_version
from .errors import ConfigError
from .policy import Plan, make_plan

from .weights_spec import NO_WEIGHTS
DEFAULT_MAX_PIXELS = 64_000_000


def _affinity() -> int | None:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def plan_for(cpu: CPUInfo | None = None, backend: str | None = "auto", precision: str | None = "auto",
             threads: int | None = None) -> Plan:
    """The static plan for this machine (or an injected CPU), given which engines can run here."""
    cpu = cpu or probe(check_ipex=False)  # IPEX's own ISA view is for `probe`; importing it costs seconds
    return make_plan(cpu, backend, precision, threads, availability=engines.availability(),
                     affinity=_affinity())


def set_threads(plan: Plan) -> None:
    if engines.get(plan.backend).needs_torch or "torch" in sys.modules:
        import torch

        torch.set_num_threads(plan.threads)


def _warn(plan: Plan) -> None:
    for w in plan.warnings:
        warnings.warn(w, PlanWarning, stacklevel=4)


def warm_up(runner, engine, example) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # IPEX's "JIT pass will be deprecated" notice on the first run
        for _ in range(engine.warmup_iters):
            runner(example)


def optimize(module, backend: str | None = "auto", precision: str | None = "auto", threads: int | None = None,
             *, cpu: CPUInfo | None = None, example=None, plan: Plan | None = None, calibration=None):
    """Optimize any image classifier for this CPU: returns ``(runner, plan)``, where ``runner`` maps a
    float NCHW batch (torch tensor or numpy array) to float32 logits, already warmed up on ``example``
    (default 1x3x224x224). Not cached: :func:`load` caches compiled artifacts."""
    import numpy as np

    plan = plan or plan_for(cpu, backend, precision, threads)
    _warn(plan)
    set_threads(plan)
    engine = engines.get(plan.backend)
    if example is None:
        example = np.random.default_rng(0).standard_normal((1, 3, 224, 224), dtype=np.float32)
    runner = engine.prepare(module, plan, example, calibration=calibration)
    warm_up(runner, engine, example)
    return runner, plan


# --- artifact keys ----------------------------------------------------------------------------

def weights_id(model, weights) -> str:
    """What identifies the weights, without loading them: a file hash, a torchvision enum name, a
    user module's parameter hash, or the seeded random init."""
    if not isinstance(model, str):
        import torch

        h = hashlib.sha256(type(model).__qualname__.encode())
        for k, v in model.state_dict().items():
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes() if v.numel() else b"")
        return "module:" + h.hexdigest()[:32]
    spec = "none" if weights is None else os.fspath(weights)
    if spec.lower() in NO_WEIGHTS:
        return "random-init:seed0"
    from .weights_spec import looks_like_path

    if looks_like_path(spec):
        from .cache import file_sha256

        p = Path(spec)
        if not p.is_file():
            from .errors import WeightsError

            raise WeightsError(f"checkpoint {spec!r} not found")
        return "sha256:" + file_sha256(p)
    return "torchvision:" + spec.upper()


def artifact_key(model_name: str, wid: str, plan: Plan, calibration_id: str | None = None,
                 transforms_id: str | None = None) -> dict:
    engine = engines.get(plan.backend)
    libs = {d: dist_version(d) for d in ("torch", "torchvision", "onnx")}
    for dist in {"ipex": ("intel-extension-for-pytorch",), "openvino": ("openvino", "nncf"),
                 "onnxruntime": ("onnxruntime",), "inductor": ("torchao",)}.get(engine.name, ()):
        libs[dist] = dist_version(dist)
    from . import __version__

    key = {"model": model_name, "weights": wid, "engine": engine.name, "precision": plan.precision,
           "isa": plan.isa_level, "versions": {"ipex_resnet": __version__, **libs}}
    if engine.name == "ipex":
        key["weights_prepack"] = plan.options.get("weights_prepack")
    if calibration_id:
        key["calibration"] = calibration_id
    if transforms_id:
        key["transforms"] = transforms_id
    return key


# --- load ---------------------------------------------------------------------------------------

def load(model="resnet18", weights="DEFAULT", backend: str | None = "auto", precision: str | None = "auto",
         threads: int | None = None, *, categories: list[str] | None = None, transforms=None,
         cpu: CPUInfo | None = None, max_pixels: int = DEFAULT_MAX_PIXELS, warmup_batch: int = 1,
         calibration=None, cache: bool | None = None, measure: bool | None = None,
         accept_accuracy: bool = False, accuracy_gate=None) -> Classifier:
    """Probe the CPU, plan, build or reuse the compiled artifact, warm up.

    ``weights``: ``"DEFAULT"``, an enum name such as ``"IMAGENET1K_V1"``, a checkpoint path, or
    ``"none"`` (seeded random init). Settings resolve as argument -> env (``IPEX_RESNET_BACKEND``,
    ``IPEX_RESNET_PRECISION``, ``IPEX_RESNET_THREADS``) -> automatic choice; ``backend="auto"``
    is decided by measurement on the first load on a machine (``measure=False`` or
    ``IPEX_RESNET_AUTO=static`` keeps the static rule). Compiled artifacts are cached
    (``cache=False`` or ``IPEX_RESNET_NO_CACHE=1`` turns that off). Sets torch's intra-op thread
    count for the process to ``plan.threads`` when torch is in use.
    """
    from . import autoselect
    from .artifacts import Request, make_classifier

    cpu = cpu or probe(check_torch=False, check_ipex=False)
    plan = plan_for(cpu, backend, precision, threads)  # bad options fail before any weights are fetched
    use_cache = cache_enabled() if cache is None else bool(cache)
    req = Request(model=model.lower() if isinstance(model, str) else model, weights=weights, cpu=cpu,
                  categories=categories, transforms=transforms, max_pixels=max_pixels, warmup_batch=warmup_batch,
                  calibration=calibration, accept_accuracy=accept_accuracy, accuracy_gate=accuracy_gate)
    if autoselect.wanted(backend, measure) and use_cache:
        plan = autoselect.choose(cpu, plan, req.model, weights, precision, threads,
                                 lambda p: make_classifier(p, req, use_cache))
    clf = make_classifier(plan, req, use_cache)
    _warn(clf.plan)
    return clf


__all__ = ["load", "optimize", "plan_for", "weights_id", "artifact_key", "warm_up"]
