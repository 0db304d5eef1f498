"""Accuracy beside speed: with labelled images (``--labels DIR``), top-1/top-5 of every path of the
report against the labels, and its drop vs the eager FP32 reference in points. Our paths preprocess
as their classifier does; peers (which take preprocessed batches) get the model's exact preset."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ipex_resnet.benchmarking.matrix import REFERENCE

BATCH = 32


def _hits(logits: np.ndarray, labels: np.ndarray, k: int) -> float:
    return float(np.mean((np.argsort(-logits, axis=1)[:, :k] == labels[:, None]).any(axis=1)))


def _logits(runner, preprocess, paths) -> np.ndarray:
    out = []
    for start in range(0, len(paths), BATCH):
        batch = np.stack([np.asarray(preprocess(p), dtype=np.float32) for p in paths[start : start + BATCH]])
        out.append(np.asarray(runner(batch), dtype=np.float32))
    return np.concatenate(out)


def measure(built: Mapping, samples, exact_preprocess) -> dict[str, dict]:
    """``{path name: {"images", "top1", "top5", "drop_pts"}}`` for every built path (a
    :class:`~ipex_resnet.benchmarking.paths.Built`), ``samples`` being ``[(path, class index)]``."""
    paths = [str(p) for p, _ in samples]
    labels = np.array([i for _, i in samples])
    out: dict[str, dict] = {}
    for name, b in built.items():
        pre = b.classifier.preprocess if b.classifier is not None else exact_preprocess
        logits = _logits(b.runner, pre, paths)
        k = min(5, logits.shape[1])
        out[name] = {"images": len(paths), "top1": _hits(logits, labels, 1), "top5": _hits(logits, labels, k)}
    ref = out.get(REFERENCE)
    for r in out.values():
        if ref is not None:
            r["drop_pts"] = round((ref["top1"] - r["top1"]) * 100, 2)
    return out


__all__ = ["measure"]
