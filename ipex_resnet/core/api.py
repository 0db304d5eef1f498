"""The public API: probe(), plan_for(), optimize() and load(): probe -> plan -> artifact (cached) ->
Classifier.

A warm start never touches torchvision: the artifact's ``meta.json`` carries the categories and the
preprocessing preset, and a lean engine (OpenVINO, ONNX Runtime) needs no torch either. Torch is
imported only to build an artifact or to run a torch engine.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ipex_resnet import engines
from ipex_resnet.core import autoselect
from ipex_resnet.core.budget import make as make_budget
from ipex_resnet.core.build import Request, make_classifier, prepare_uncached
from ipex_resnet.core.cache import enabled as cache_enabled
from ipex_resnet.core.classifier import Classifier, PlanWarning
from ipex_resnet.core.policy import Plan, make_plan
from ipex_resnet.core.result_cache import make as make_result_cache
from ipex_resnet.core.runtime import set_threads, warm_up
from ipex_resnet.errors import ConfigError
from ipex_resnet.hardware import cpu as hardware
from ipex_resnet.hardware.cpu import CPUInfo
from ipex_resnet.imaging import DEFAULT_MAX_PIXELS
from ipex_resnet.models.spec import as_preset, check_model_id, is_import_path
from ipex_resnet.util.cpus import allowed_cpus

if TYPE_CHECKING:
    import numpy as np
    import torch

    from ipex_resnet.core.budget import Budget
    from ipex_resnet.core.result_cache import ResultCache
    from ipex_resnet.engines.streams import Streams
    from ipex_resnet.imaging import PresetSpec

    ModelArg = str | torch.nn.Module
    Batches = Sequence[np.ndarray | torch.Tensor]


def probe(
    cpuinfo_text: str | None = None, lscpu_text: str | None = None, *, check_torch: bool = True, check_ipex: bool = True
) -> CPUInfo:
    """What this CPU has (or the injected ``/proc/cpuinfo`` / ``lscpu`` text), cross-checked with
    torch's view and, where IPEX can run, IPEX's own ISA level (importing IPEX costs seconds)."""
    ipex_isa = None
    live = cpuinfo_text is None and lscpu_text is None
    if live and check_torch and check_ipex:
        from ipex_resnet.export.ipex import isa_level

        ipex_isa = isa_level()
    return hardware.probe(cpuinfo_text, lscpu_text, check_torch=check_torch, ipex_isa=ipex_isa)


def plan_for(
    cpu: CPUInfo | None = None,
    backend: str | None = "auto",
    precision: str | None = "auto",
    threads: int | None = None,
    streams: int | str | None = "auto",
) -> Plan:
    """The static plan for this machine (or an injected CPU), given which engines can run here."""
    cpu = cpu or hardware.probe()
    return make_plan(
        cpu,
        backend,
        precision,
        threads,
        availability=engines.availability(),
        affinity=len(allowed_cpus() or ()) or None,
        streams=streams,
    )


def _warn(plan: Plan) -> None:
    for w in plan.warnings:
        warnings.warn(w, PlanWarning, stacklevel=4)


def optimize(
    module: ModelArg,
    backend: str | None = "auto",
    precision: str | None = "auto",
    threads: int | None = None,
    *,
    cpu: CPUInfo | None = None,
    example: np.ndarray | torch.Tensor | None = None,
    plan: Plan | None = None,
    calibration: Batches | None = None,
    streams: int | str | None = "auto",
) -> tuple[Streams, Plan]:
    """Optimize any image classifier for this CPU: returns ``(runner, plan)``, where ``runner`` maps a
    float NCHW batch (torch tensor or numpy array) to float32 logits, already warmed up on ``example``
    (default 1x3x224x224). ``module``: an nn.Module or an import path ``"pkg.module:attr"`` (an
    nn.Module or a callable returning one). INT8 takes ``calibration`` (preprocessed float NCHW
    batches). Not cached: :func:`load` caches compiled artifacts. The runner is safe to share between
    threads (``streams`` model calls run at once; default one)."""
    import numpy as np

    module = _module_of(module)

    plan = plan or plan_for(cpu, backend, precision, threads, streams)
    _warn(plan)
    set_threads(plan)
    engine = engines.get(plan.backend)
    if example is None:
        example = np.random.default_rng(0).standard_normal((1, 3, 224, 224), dtype=np.float32)
    runner = prepare_uncached(engine, module, plan, example, calibration)
    warm_up(runner, engine, example)
    return runner, plan


def _module_of(module: ModelArg) -> torch.nn.Module:
    if isinstance(module, str) and is_import_path(module):
        from ipex_resnet.models.spec import import_model

        return import_model(module).eval()
    if isinstance(module, str):
        raise ConfigError(
            f"optimize() takes an nn.Module or an import path pkg.module:attr, not {module!r}; "
            "for a torchvision model name use load()"
        )
    return module


def load(
    model: ModelArg = "resnet18",
    weights: str | Path | None = "DEFAULT",
    backend: str | None = "auto",
    precision: str | None = "auto",
    threads: int | None = None,
    *,
    categories: list[str] | None = None,
    transforms: PresetSpec | dict[str, Any] | Any | None = None,
    cpu: CPUInfo | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    warmup_batch: int = 1,
    calibration: Batches | None = None,
    cache: bool | None = None,
    measure: bool | None = None,
    accept_accuracy: bool = False,
    accuracy_gate: float | None = None,
    labels: str | Path | None = None,
    accuracy_budget: float | None = None,
    result_cache: str | ResultCache | None = None,
    streams: int | str | None = "auto",
    model_id: str | None = None,
) -> Classifier:
    """Probe the CPU, plan, build or reuse the compiled artifact, warm up.

    ``model``: a torchvision name, an import path ``"pkg.module:attr"`` (an nn.Module or a callable
    returning one) or an nn.Module. ``weights``: ``"DEFAULT"``, an enum name such as
    ``"IMAGENET1K_V1"``, a checkpoint path, or ``"none"`` (seeded random init). ``transforms``: a
    torchvision preset, a :class:`~ipex_resnet.imaging.PresetSpec` or its dict (resize_size, crop_size,
    mean, std, interpolation). ``categories``: one name per output. Settings resolve as argument -> env (``IPEX_RESNET_BACKEND``,
    ``IPEX_RESNET_PRECISION``, ``IPEX_RESNET_THREADS``) -> automatic choice; ``backend="auto"``
    is decided by measurement on the first load on a machine (``measure=False`` or
    ``IPEX_RESNET_AUTO=static`` keeps the static rule). Compiled artifacts are cached
    (``cache=False`` or ``IPEX_RESNET_NO_CACHE=1`` turns that off). Sets torch's intra-op thread
    count for the process to ``plan.threads`` when torch is in use.

    INT8 (``precision="int8"``) is calibrated on ``calibration`` and judged against FP32: given
    ``labels`` (a folder with ``labels.csv`` or one sub-folder per class), by the top-1 points it
    loses (``accuracy_gate``: at most 1.0 by default); otherwise by top-1 agreement on held-out
    calibration images. When it misses the gate, the layers most sensitive to quantization are kept
    in FP32/BF16 until it holds; ``accept_accuracy=True`` loads one that still misses.

    ``accuracy_budget`` (points, with ``calibration`` and preferably ``labels``): the measured
    ``backend="auto"`` with ``precision="auto"`` also considers INT8 and picks the fastest path whose
    top-1 stays within the budget of eager FP32. Without a budget, auto never picks INT8.

    ``result_cache``: ``"exact"`` (SHA-256 of the image bytes) or ``"perceptual"`` (perceptual hash of the
    decoded image, for re-encoded or resized copies) turns on a bounded cache of top-k results that
    :meth:`Classifier.predict` consults, keyed by the artifact key plus the image; or a
    :class:`~ipex_resnet.core.result_cache.ResultCache`. Off by default.

    ``streams``: model calls at once, each on ``threads // streams`` cores (argument -> env
    ``IPEX_RESNET_STREAMS`` -> measured with the engine, else one). The classifier is thread-safe.

    ``model_id`` (your own model only): its version, e.g. a git commit. The artifact cache trusts it
    instead of building the model to hash its weights, so a cached load runs none of your code; a
    different id (or checkpoint file) is another artifact. Change it whenever the code or weights do.
    """
    cpu = cpu or hardware.probe(check_torch=False)
    plan = plan_for(cpu, backend, precision, threads, streams)  # bad options fail before any weights are fetched
    use_cache = cache_enabled() if cache is None else bool(cache)
    if isinstance(model, str) and not is_import_path(model):
        model = model.lower()  # torchvision names are lower case; an import path is the user's spelling
    model_id = check_model_id(model, model_id)
    req = Request(
        model=model,
        weights=weights,
        cpu=cpu,
        categories=categories,
        transforms=as_preset(transforms),
        max_pixels=max_pixels,
        warmup_batch=warmup_batch,
        calibration=calibration,
        accept_accuracy=accept_accuracy,
        accuracy_gate=accuracy_gate,
        labels=labels,
        model_id=model_id,
    )
    budget = None
    if accuracy_budget is not None and str(precision or "auto").lower() == "auto":
        budget = make_budget(accuracy_budget, calibration, labels, categories)
        if accuracy_gate is None:
            req = dataclasses.replace(req, accuracy_gate=float(accuracy_budget))
    if autoselect.wanted(backend, measure) and use_cache:
        plan = _measured_plan(plan, req, precision, threads, streams, budget)
    results = make_result_cache(result_cache)  # a bad mode or a missing imagehash fails before any build
    clf = make_classifier(plan, req, use_cache)
    _warn(clf.plan)
    if results is not None:
        clf.result_cache = results
    return clf


def _measured_plan(
    plan: Plan,
    req: Request,
    precision: str | None,
    threads: int | None,
    streams: int | str | None,
    budget: Budget | None,
) -> Plan:
    """``plan`` with the engine (and, within an accuracy ``budget``, the precision) measured on this
    machine, or read from its cached decision."""
    return autoselect.choose(
        req.cpu,
        plan,
        req.model,
        req.weights,
        precision,
        threads,
        lambda p: make_classifier(p, req, True),
        budget=budget,
        streams=streams,
        model_id=req.model_id,
    )


def undecided_auto(
    model: ModelArg,
    weights: str | Path | None = "DEFAULT",
    *,
    backend: str | None = None,
    precision: str | None = None,
    threads: int | None = None,
    streams: int | str | None = "auto",
    cpu: CPUInfo | None = None,
    model_id: str | None = None,
) -> Path | None:
    """Would :func:`load` with these arguments measure the engines first? The decision file it would
    write, or None (a decision is cached, the static rule is asked for, or the cache is off). Cheap: it
    probes and plans, and builds nothing. Safe from any thread."""
    if not (autoselect.wanted(backend, None) and cache_enabled()):
        return None
    cpu = cpu or hardware.probe(check_torch=False)
    plan = plan_for(cpu, backend, precision, threads, streams)
    if isinstance(model, str) and not is_import_path(model):
        model = model.lower()
    return autoselect.undecided(cpu, plan, model, weights, precision, model_id=check_model_id(model, model_id))


__all__ = ["load", "optimize", "plan_for", "probe", "undecided_auto"]
