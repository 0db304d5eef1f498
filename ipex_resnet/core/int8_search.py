"""Accuracy-aware INT8: judge a quantized runner, and when it misses the gate, keep the layers most
sensitive to quantization in FP32/BF16 until the gate holds or keeping more stops helping.

The judge compares with the FP32 eager reference on held-out calibration images (top-1 agreement,
top-5 overlap) and, given labelled images, measures top-1/top-5 against the labels: the gate is
then a top-1 drop vs FP32 of at most :data:`DEFAULT_MAX_DROP_PTS` points. Layers are ranked once
(:func:`ipex_resnet.quantization.sensitivity.rank_layers`, each layer quantized alone in eager) and
kept out of INT8 in growing groups (1, 2, 4, ... of the most sensitive), each engine with its own tool.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ipex_resnet.quantization import accuracy

DEFAULT_MAX_DROP_PTS = 1.0
#: never keep more than this share of the quantizable layers out of INT8: past it INT8 buys little
MAX_KEPT_SHARE = 0.25
RANK_IMAGES = 16


@dataclasses.dataclass(frozen=True)
class DropGate:
    """Top-1 accuracy on labelled images may drop at most ``max_drop_pts`` points below FP32."""

    max_drop_pts: float = DEFAULT_MAX_DROP_PTS


def gate_for(requested, labelled: bool):
    """The gate: the caller's (a Gate, a DropGate, or a number of points), else the default for the
    evidence at hand (labels: a 1-point top-1 drop; none: agreement with FP32). Points without labels
    are points of top-1 disagreement with FP32 (as an accuracy budget counts them)."""
    if isinstance(requested, (int, float)) and not isinstance(requested, bool):
        if labelled:
            return DropGate(float(requested))
        return accuracy.Gate(min_top1=max(0.0, 1 - float(requested) / 100), min_top5=0.0)
    if requested is not None:
        return requested
    return DropGate() if labelled else accuracy.DEFAULT_GATE


def _eager(module, batches) -> np.ndarray:
    import torch

    with torch.no_grad():
        return np.concatenate([module.eval()(torch.from_numpy(b)).float().numpy() for b in batches])


def _run(runner, batches) -> np.ndarray:
    return np.concatenate([np.asarray(runner(b), dtype=np.float32) for b in batches])


class Judge:
    """Everything a quantized runner is judged on, prepared once: the held-out images, the labelled
    ones (optional), and the FP32 eager logits of both."""

    def __init__(
        self, module, held_batches: list, labelled_batches: list | None = None, labels: Sequence[int] | None = None
    ):
        self.held, self.ref_held = held_batches, _eager(module, held_batches)
        self.labelled, self.labels = labelled_batches, list(labels or [])
        self.ref_labelled = _eager(module, labelled_batches) if labelled_batches else None

    def __call__(self, runner) -> dict[str, Any]:
        report = {"agreement": accuracy.agreement(_run(runner, self.held), self.ref_held).as_dict()}
        if self.labelled:
            got = _run(runner, self.labelled)
            report["labelled"] = accuracy.labelled_accuracy(got, self.ref_labelled, self.labels).as_dict()
        return report

    @staticmethod
    def passes(report: dict, gate) -> bool:
        if isinstance(gate, DropGate):
            return report["labelled"]["drop_pts"] <= gate.max_drop_pts
        return gate.passes(accuracy.Agreement.from_dict(report["agreement"]))

    @staticmethod
    def score(report: dict) -> float:
        """Higher is better: minus the top-1 drop with labels, else top-1 agreement (in points)."""
        if "labelled" in report:
            return -report["labelled"]["drop_pts"]
        return report["agreement"]["top1"] * 100


def _clear(out_dir: Path) -> None:
    for child in out_dir.iterdir():
        shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()


def search(
    quantize: Callable[[list[str]], dict],
    load: Callable[[], Any],
    judge: Judge,
    gate,
    rank: Callable[[], list[tuple[str, float]]],
    out_dir: Path,
) -> tuple[dict, dict, list[dict]]:
    """``(info, report, steps)`` of the artifact left in ``out_dir``: plain INT8 when it passes the
    gate; else the first of growing groups of the most sensitive layers kept out of INT8 that passes;
    else the best tried. ``quantize(keep_float)`` writes an artifact, ``load()`` runs it."""
    info = quantize([])
    report = judge(load())
    steps = [{"kept_float": [], **_summary(report)}]
    if Judge.passes(report, gate):
        return info, report, steps
    ranked = [name for name, _ in rank()]
    best: tuple[float, list[str], Any, Any] = (Judge.score(report), [], info, report)
    limit, n, stale = max(1, int(len(ranked) * MAX_KEPT_SHARE)), 1, 0
    while n <= limit:
        kept = ranked[:n]
        _clear(out_dir)
        info = quantize(kept)
        report = judge(load())
        steps.append({"kept_float": kept, **_summary(report)})
        if Judge.passes(report, gate):
            return info, report, steps
        if Judge.score(report) > best[0] + 1e-9:
            best, stale = (Judge.score(report), kept, info, report), 0
        else:
            stale += 1
            if stale >= 2:  # keeping more stopped helping
                break
        n = n * 2 if n * 2 <= limit or n == limit else limit
    _, kept, info, report = best
    if steps[-1]["kept_float"] != kept:  # leave the best attempt's artifact in out_dir
        _clear(out_dir)
        info = quantize(kept)
    return info, report, steps


def _summary(report: dict) -> dict:
    out = {"top1_agreement": report["agreement"]["top1"]}
    if "labelled" in report:
        out.update(top1=report["labelled"]["top1"], drop_pts=report["labelled"]["drop_pts"])
    return out


__all__ = ["DEFAULT_MAX_DROP_PTS", "DropGate", "Judge", "gate_for", "search"]
