"""How close a quantized model stays to the FP32 eager reference, and the gate that refuses it.

Every INT8 artifact is judged on held-out images (never the calibration ones) against the FP32
eager logits of the same images:

* **top-1 agreement**: share of images whose top-1 class is the reference's;
* **top-5 overlap**: mean ``|top5 ∩ top5_ref| / 5``;
* **relative logit error**: ``||logits - ref||_F / ||ref||_F`` over the whole batch.

Without labels, the default gate (:data:`DEFAULT_GATE`) asks for top-1 agreement >= 0.95 and top-5
overlap >= 0.90 with FP32; the relative error is reported, not gated (its scale depends on the
model). It is derived from a model with real ImageNet weights (EfficientNet-Lite1, docs/accuracy.md):
correct static INT8 agrees with FP32 on 98.5-100% of the 200 photos on every engine (and loses at
most 0.5 top-1 points against the labels), while the same flows calibrated on a constant image
fall far below. Given labelled images the gate is a top-1 drop (:mod:`ipex_resnet.core.int8_search`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ipex_resnet.errors import AccuracyGateError

TOP_K = 5


@dataclasses.dataclass(frozen=True)
class Agreement:
    images: int
    top1: float  #: share of images with the reference's top-1 class
    top5: float  #: mean |top5 ∩ top5_ref| / 5
    rel_error: float  #: ||logits - ref||_F / ||ref||_F

    def describe(self) -> str:
        return (
            f"top-1 agreement with fp32 {self.top1:.1%}, top-5 overlap {self.top5:.1%}, "
            f"relative logit error {self.rel_error:.3f} on {self.images} held-out images"
        )

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Agreement:
        return cls(
            images=int(d["images"]), top1=float(d["top1"]), top5=float(d["top5"]), rel_error=float(d["rel_error"])
        )


@dataclasses.dataclass(frozen=True)
class Gate:
    min_top1: float = 0.95
    min_top5: float = 0.90

    def passes(self, a: Agreement) -> bool:
        return a.top1 >= self.min_top1 and a.top5 >= self.min_top5


DEFAULT_GATE = Gate()


def _numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor, without importing torch
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


def _topk(logits: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-logits, axis=1, kind="stable")[:, :k]


def agreement(logits, reference) -> Agreement:
    """Compare ``logits`` with ``reference`` (both N x C, same images in the same order)."""
    q, r = _numpy(logits), _numpy(reference)
    if q.shape != r.shape or q.ndim != 2 or len(q) == 0:
        raise ValueError(f"logits {q.shape} and reference {r.shape} must be the same non-empty N x C")
    k = min(TOP_K, q.shape[1])
    top1 = float(np.mean(q.argmax(1) == r.argmax(1)))
    tq, tr = _topk(q, k), _topk(r, k)
    overlap = np.mean([len(set(a) & set(b)) / k for a, b in zip(tq.tolist(), tr.tolist())])
    rel = float(np.linalg.norm(q - r) / max(np.linalg.norm(r), 1e-12))
    return Agreement(images=len(q), top1=top1, top5=float(overlap), rel_error=rel)


def check(a: Agreement, gate: Gate = DEFAULT_GATE, *, what: str = "the int8 model") -> Agreement:
    """Return ``a`` when it passes ``gate``; raise :class:`AccuracyGateError` naming the numbers if not."""
    if gate.passes(a):
        return a
    raise AccuracyGateError(
        f"{what} disagrees with fp32 too much: top-1 agreement {a.top1:.1%} (gate {gate.min_top1:.0%}), "
        f"top-5 overlap {a.top5:.1%} (gate {gate.min_top5:.0%}), relative logit error {a.rel_error:.3f} "
        f"on {a.images} held-out images. Calibrate on more representative images (calibration=DIR of "
        "photos like the ones you will classify), or accept it explicitly with accept_accuracy=True "
        "(--accept-accuracy on the command line)",
        a,
        gate,
    )


@dataclasses.dataclass(frozen=True)
class LabelledAccuracy:
    """Top-1/top-5 against labels, of the quantized model and of the FP32 reference on the same images."""

    images: int
    top1: float
    top5: float
    fp32_top1: float
    fp32_top5: float

    @property
    def drop_pts(self) -> float:
        """Top-1 points lost against FP32 (positive: worse)."""
        return round((self.fp32_top1 - self.top1) * 100, 2)

    def describe(self) -> str:
        return (
            f"top-1 {self.top1:.1%} vs fp32 {self.fp32_top1:.1%} ({-self.drop_pts:+.1f} pts), "
            f"top-5 {self.top5:.1%} vs {self.fp32_top5:.1%} on {self.images} labelled images"
        )

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "drop_pts": self.drop_pts}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LabelledAccuracy:
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls)})


def _hits(logits: np.ndarray, labels: np.ndarray, k: int) -> float:
    return float(np.mean((_topk(logits, k) == labels[:, None]).any(axis=1)))


def labelled_accuracy(logits, reference, labels) -> LabelledAccuracy:
    """Top-1/top-5 of ``logits`` and of the FP32 ``reference`` (both N x C) against ``labels``."""
    q, r, y = _numpy(logits), _numpy(reference), np.asarray(labels)
    if q.shape != r.shape or q.ndim != 2 or len(q) != len(y) or len(q) == 0:
        raise ValueError(f"logits {q.shape}, reference {r.shape} and {len(y)} labels do not match")
    k = min(TOP_K, q.shape[1])
    return LabelledAccuracy(len(q), _hits(q, y, 1), _hits(q, y, k), _hits(r, y, 1), _hits(r, y, k))


__all__ = [
    "AccuracyGateError",
    "Agreement",
    "DEFAULT_GATE",
    "Gate",
    "LabelledAccuracy",
    "agreement",
    "check",
    "labelled_accuracy",
]
