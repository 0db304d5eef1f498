"""INT8 in load(): calibrate, quantize with the engine's own flow, judge the result on held-out images
against the FP32 eager reference, record that in the artifact, and gate every load on it.

The quantized artifact is cached like any other, keyed also by the calibration set's fingerprint; an
alias per (model, weights, engine, versions) remembers the latest one, so ``classify --precision
int8`` finds it without being given the calibration images again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

from ipex_resnet.core.cache import digest, root
from ipex_resnet.errors import AccuracyGateError, ConfigError
from ipex_resnet.quantization.calibration import HOW
from ipex_resnet.util.files import write_json_atomic


def _alias_path(key_without_calibration: Mapping) -> Path:
    return root() / "int8" / f"{digest(key_without_calibration)}.json"


def calibration_set(calibration):
    """The chosen calibration images and their fingerprint (read once per load), or None."""
    if calibration is None:
        return None
    from ipex_resnet.core.digests import file_digests
    from ipex_resnet.quantization.calibration import collect

    with file_digests() as digest:  # each image hashed once per change, not once per load
        return collect(calibration, file_digest=digest)


def full_key(base_key: dict, cal_set, labelled_id: str | None = None) -> dict:
    """The artifact key for INT8: ``base_key`` plus the calibration set's fingerprint (and the labelled
    images' when the gate is judged on labels). Without calibration images, the latest quantization
    cached for ``base_key``, else a clear error."""
    if cal_set is not None:
        key = {**base_key, "calibration": cal_set.digest}
        return {**key, "labels": labelled_id} if labelled_id else key
    try:
        record = json.loads(_alias_path(base_key).read_text())
    except (OSError, ValueError):
        raise ConfigError(
            f"int8 needs calibration images the first time: {HOW} "
            f"(no quantized {base_key['engine']} artifact of {base_key['model']} is cached yet)"
        ) from None
    key = record.get("key") or {}
    if {k: v for k, v in key.items() if k not in ("calibration", "labels")} != json.loads(
        json.dumps(base_key, default=str)
    ):
        raise ConfigError(f"int8 needs calibration images: {HOW}")
    return key


def remember(base_key: dict, key: dict) -> None:
    write_json_atomic(_alias_path(base_key), {"key": key}, default=str)


def quantize_into(
    engine, module, plan, example, out_dir: Path, calibration_batches, keep_float: list[str] | None = None
) -> dict:
    """The engine's own INT8 flow (:mod:`ipex_resnet.quantization`) writes its artifact into
    ``out_dir``, leaving the ``keep_float`` layers unquantized; the engine then completes it as it does
    an FP32 one. Returns the scheme info."""
    from ipex_resnet.quantization import quantize

    info = quantize(
        engine.name,
        module,
        list(calibration_batches),
        out_dir,
        threads=plan.threads,
        example=example,
        bf16=plan.native_bf16,
        keep_float=list(keep_float or []),
    )
    return engine.finish(out_dir, plan, dict(info or {}))


def labelled_set(labels, categories) -> tuple[list, str] | None:
    """``([(path, class index)], fingerprint)`` of the labelled images, or None without labels."""
    if labels is None:
        return None
    from ipex_resnet.core.digests import file_digests
    from ipex_resnet.core.evaluate import read_labels
    from ipex_resnet.quantization.calibration import fingerprint

    samples = read_labels(labels, list(categories) if categories else None)
    with file_digests() as digest:  # the images' bytes, each hashed once per change
        h = hashlib.sha256(fingerprint([str(p) for p, _ in samples], file_digest=digest).encode())
    h.update(",".join(str(i) for _, i in samples).encode())  # and their labels, in order
    return samples, h.hexdigest()[:16]


def build(engine, loaded, plan, example, out_dir: Path, cs, labelled=None, gate=None) -> dict:
    """Quantize into ``out_dir`` and judge it; when it misses the gate, keep the most sensitive layers
    out of INT8 until it holds (:mod:`.int8_search`). Returns the meta extras: the scheme, the layers
    kept in FP32/BF16, the search's steps and the accuracy reports."""
    from ipex_resnet.core import int8_search
    from ipex_resnet.imaging import Preprocessor
    from ipex_resnet.quantization.calibration import batches

    if cs is None:
        raise ConfigError(f"int8 needs calibration images: {HOW}")
    calib, held = cs.split()
    pre = Preprocessor.from_preset(loaded.transforms)  # as the classifier will preprocess at run time
    cal_batches = batches(calib, pre, desc="calibrating")
    samples = labelled[0] if labelled else None
    judge = int8_search.Judge(
        loaded.module,
        batches(held, pre, desc="held-out images"),
        batches([str(p) for p, _ in samples], pre, desc="labelled images") if samples else None,
        [i for _, i in samples] if samples else None,
    )

    def rank():
        from ipex_resnet.quantization.sensitivity import rank_layers

        return rank_layers(loaded.module, cal_batches[: int8_search.RANK_IMAGES])

    info, report, steps = int8_search.search(
        lambda keep: quantize_into(engine, loaded.module, plan, example, out_dir, cal_batches, keep),
        lambda: engine.load(out_dir, plan),
        judge,
        int8_search.gate_for(gate, bool(samples)),
        rank,
        out_dir,
    )
    info.update(calibration_images=len(calib), held_out_images=len(held), calibration_source=cs.source)
    info.setdefault("kept_float", [])
    if len(steps) > 1:
        info["search"] = steps
    return {"info": info, "accuracy": report["agreement"], "accuracy_labelled": report.get("labelled")}


def check(meta: dict, *, accept: bool, gate=None) -> None:
    """Refuse an INT8 artifact below the gate (``accept=True`` overrides, knowingly)."""
    from ipex_resnet.core import int8_search
    from ipex_resnet.quantization import accuracy

    if accept or not meta.get("accuracy"):
        return
    what = f"the int8 {meta.get('key', {}).get('engine', '?')} artifact of {meta.get('model_name', '?')}"
    labelled = meta.get("accuracy_labelled")
    g = int8_search.gate_for(gate, bool(labelled))
    if isinstance(g, int8_search.DropGate):
        assert labelled  # a drop gate is chosen only for a labelled judgement
        la = accuracy.LabelledAccuracy.from_dict(labelled)
        if la.drop_pts > g.max_drop_pts:
            raise AccuracyGateError(
                f"{what} loses {la.drop_pts:.1f} top-1 points against fp32 (gate {g.max_drop_pts:.1f}): "
                f"{la.describe()}{_kept(meta)}. Calibrate on more representative images, allow a larger "
                "drop (accuracy_gate=POINTS), or accept it explicitly with accept_accuracy=True "
                "(--accept-accuracy on the command line)",
                la,
                g,
            )
        return
    accuracy.check(accuracy.Agreement.from_dict(meta["accuracy"]), g, what=what)


def _kept(meta: dict) -> str:
    kept = (meta.get("info") or {}).get("kept_float") or []
    return f", even with {len(kept)} layer(s) kept out of INT8 ({', '.join(kept)})" if kept else ""


def describe(meta: dict) -> str:
    info, acc, lab = meta.get("info", {}), meta.get("accuracy") or {}, meta.get("accuracy_labelled")
    text = info.get("scheme", "static")
    if info.get("calibration_images"):
        text += f", calibrated on {info['calibration_images']} images"
    if info.get("kept_float"):
        text += f"; kept out of INT8 (most sensitive): {', '.join(info['kept_float'])}"
    if lab:
        text += (
            f"; top-1 {lab['top1']:.1%} vs fp32 {lab['fp32_top1']:.1%} ({-lab['drop_pts']:+.1f} pts) "
            f"on {lab['images']} labelled images"
        )
    if acc:
        text += (
            f"; top-1 agreement with fp32 {acc['top1']:.1%}, top-5 overlap {acc['top5']:.1%} "
            f"on {acc['images']} held-out images"
        )
    return text
