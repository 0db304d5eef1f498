"""INT8 in load(): calibrate, quantize with the engine's own flow, judge the result on held-out images
against the FP32 eager reference, record that in the artifact, and gate every load on it.

The quantized artifact is cached like any other, keyed also by the calibration set's fingerprint; an
alias per (model, weights, engine, versions) remembers the latest one, so ``classify --precision
int8`` finds it without being given the calibration images again.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from .cache import digest, root
from .errors import ConfigError

HOW = ("pass calibration=DIR (a folder of images like the ones you will classify, a few hundred is "
       "plenty) or a list of images; on the command line --calibration DIR")


def _alias_path(key_without_calibration: Mapping) -> Path:
    return root() / "int8" / f"{digest(key_without_calibration)}.json"


def calibration_set(calibration):
    """The chosen calibration images and their fingerprint (read once per load), or None."""
    if calibration is None:
        return None
    from .quantization.calibration import collect

    return collect(calibration)


def full_key(base_key: dict, cal_set) -> dict:
    """The artifact key for INT8: ``base_key`` plus the calibration set's fingerprint. Without
    calibration images, the latest quantization cached for ``base_key``, else a clear error."""
    if cal_set is not None:
        return {**base_key, "calibration": cal_set.digest}
    try:
        record = json.loads(_alias_path(base_key).read_text())
    except (OSError, ValueError):
        raise ConfigError(f"int8 needs calibration images the first time: {HOW} "
                          f"(no quantized {base_key['engine']} artifact of {base_key['model']} is cached yet)") from None
    key = record.get("key") or {}
    if {k: v for k, v in key.items() if k != "calibration"} != json.loads(json.dumps(base_key, default=str)):
        raise ConfigError(f"int8 needs calibration images: {HOW}")
    return key


def remember(base_key: dict, key: dict) -> None:
    path = _alias_path(base_key)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "w") as f:
        json.dump({"key": key}, f, default=str)
    os.replace(tmp, path)


def build(engine, loaded, plan, example, out_dir: Path, cs) -> dict:
    """Quantize into ``out_dir``; returns the meta extras: the scheme and the accuracy report."""
    import numpy as np
    import torch

    from .imaging import Preprocessor
    from .quantization import accuracy
    from .quantization.calibration import batches

    if cs is None:
        raise ConfigError(f"int8 needs calibration images: {HOW}")
    calib, held = cs.split()
    pre = Preprocessor.from_preset(loaded.transforms)  # as the classifier will preprocess at run time
    cal_batches = batches(calib, pre, desc="calibrating")
    held_batches = batches(held, pre, desc="held-out images")
    info = dict(engine.build(loaded.module, plan, example, out_dir, calibration=cal_batches) or {})
    runner = engine.load(out_dir, plan)
    with torch.no_grad():
        ref = np.concatenate([loaded.module.eval()(torch.from_numpy(b)).float().numpy() for b in held_batches])
    got = np.concatenate([np.asarray(runner(b)) for b in held_batches])
    agree = accuracy.agreement(got, ref)
    info.update(calibration_images=len(calib), held_out_images=len(held), calibration_source=cs.source)
    return {"info": info, "accuracy": agree.as_dict()}


def check(meta: dict, *, accept: bool, gate=None) -> None:
    """Refuse an INT8 artifact below the gate (``accept=True`` overrides, knowingly)."""
    from .quantization import accuracy

    if accept or not meta.get("accuracy"):
        return
    a = accuracy.Agreement.from_dict(meta["accuracy"])
    accuracy.check(a, gate or accuracy.DEFAULT_GATE,
                   what=f"the int8 {meta.get('key', {}).get('engine', '?')} artifact of {meta.get('model_name', '?')}")


def describe(meta: dict) -> str:
    info, acc = meta.get("info", {}), meta.get("accuracy") or {}
    text = info.get("scheme", "static")
    if info.get("calibration_images"):
        text += f", calibrated on {info['calibration_images']} images"
    if acc:
        text += (f"; top-1 agreement with fp32 {acc['top1']:.1%}, top-5 overlap {acc['top5']:.1%} "
                 f"on {acc['images']} held-out images")
    return text
