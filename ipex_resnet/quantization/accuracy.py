"""How close a quantized model stays to the FP32 eager reference, and the gate that refuses it.

Every INT8 artifact is judged on held-out images (never the calibration ones) against the FP32
eager logits of the same images:

* **top-1 agreement**: share of images whose top-1 class is the reference's;
* **top-5 overlap**: mean ``|top5 ∩ top5_ref| / 5``;
* **relative logit error**: ``||logits - ref||_F / ||ref||_F`` over the whole batch.

The default gate (:data:`DEFAULT_GATE`) asks for top-1 agreement >= 0.80 and top-5 overlap
>= 0.80; the relative error is reported, not gated (its scale depends on the model). Measured on
the 200 real photos (calibrate on 100, judge on the other 100) with the BN-calibrated test
ResNet-18 -- random weights, so its top logits nearly tie and are *harder* to agree on than a
trained network's -- correct static INT8 reached 0.87-0.93 top-1 agreement and 0.91-0.95 top-5
overlap on every engine, while the same flows calibrated on a constant image fell to 0.35 top-1
and 0.31-0.33 top-5 (docs/int8.md). The gate sits well inside that gap: it passes every correct
quantization with margin and refuses a broken one. Trained weights agree far more closely (the
published INT8 ResNet drops are 0.2-0.3 top-1 points), so users who want a stricter gate pass one.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ..errors import IpexResnetError

TOP_K = 5


class AccuracyGateError(IpexResnetError):
    """A quantized model disagrees with FP32 more than the gate allows (message has the numbers)."""

    def __init__(self, message: str, agreement: Agreement, gate: Gate):
        super().__init__(message)
        self.agreement = agreement
        self.gate = gate


@dataclasses.dataclass(frozen=True)
class Agreement:
    images: int
    top1: float       #: share of images with the reference's top-1 class
    top5: float       #: mean |top5 ∩ top5_ref| / 5
    rel_error: float  #: ||logits - ref||_F / ||ref||_F

    def describe(self) -> str:
        return (f"top-1 agreement with fp32 {self.top1:.1%}, top-5 overlap {self.top5:.1%}, "
                f"relative logit error {self.rel_error:.3f} on {self.images} held-out images")

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Agreement:
        return cls(images=int(d["images"]), top1=float(d["top1"]), top5=float(d["top5"]),
                   rel_error=float(d["rel_error"]))


@dataclasses.dataclass(frozen=True)
class Gate:
    min_top1: float = 0.80
    min_top5: float = 0.80

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
        "(--accept-accuracy on the command line)", a, gate)


__all__ = ["AccuracyGateError", "Agreement", "DEFAULT_GATE", "Gate", "agreement", "check"]
