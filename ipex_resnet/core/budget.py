"""``auto`` within an accuracy budget: the images every candidate path is judged on, and how.

With labelled images the budget is in top-1 points lost against the eager FP32 reference; without
labels, in points of top-1 disagreement with it on the calibration images (stricter: a changed
answer counts even when both are wrong). Only a path within the budget may be chosen, INT8 included.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ipex_resnet.errors import ConfigError

MAX_UNLABELLED = 64  # calibration images judged per candidate when there are no labels


@dataclasses.dataclass(frozen=True)
class Budget:
    max_drop_pts: float
    paths: tuple[str, ...]
    labels: tuple[int, ...] | None  # None: no labels, judged by agreement with the reference
    fingerprint: str

    @property
    def measure(self) -> str:
        return (
            "top-1 drop vs eager fp32 on labelled images"
            if self.labels
            else "top-1 disagreement with eager fp32 on calibration images"
        )

    def logits(self, clf) -> np.ndarray:
        out = []
        for start in range(0, len(self.paths), 32):
            batch = np.stack([np.asarray(clf.preprocess(p)) for p in self.paths[start : start + 32]])
            out.append(np.asarray(clf(batch), dtype=np.float32))
        return np.concatenate(out)

    def judge(self, logits: np.ndarray, reference: np.ndarray) -> dict:
        """``{"drop_pts", "top1"?}`` of ``logits`` against the reference's."""
        if self.labels is None:
            return {"drop_pts": round(float(np.mean(logits.argmax(1) != reference.argmax(1))) * 100, 2)}
        y = np.asarray(self.labels)
        top1, ref_top1 = float(np.mean(logits.argmax(1) == y)), float(np.mean(reference.argmax(1) == y))
        return {"top1": round(top1, 4), "drop_pts": round((ref_top1 - top1) * 100, 2)}


def make(max_drop_pts, calibration, labels, categories=None) -> Budget | None:
    """The budget ``load(accuracy_budget=..., calibration=..., labels=...)`` asks for, or None."""
    if max_drop_pts is None:
        return None
    if max_drop_pts < 0:
        raise ConfigError(f"accuracy_budget must be at least 0 points, got {max_drop_pts}")
    if labels is not None:
        from ipex_resnet.core.int8 import labelled_set

        found = labelled_set(labels, categories)
        assert found is not None  # labels were given
        samples, digest = found
        return Budget(float(max_drop_pts), tuple(str(p) for p, _ in samples), tuple(i for _, i in samples), digest)
    if calibration is None:
        raise ConfigError(
            "an accuracy budget needs images to judge the paths on: calibration=DIR (and "
            "labels=DIR for accuracy against labels); on the command line --calibration/--labels"
        )
    from ipex_resnet.quantization.calibration import collect

    cs = collect(calibration, count=MAX_UNLABELLED)
    paths = tuple(str(x) for x in cs.items if isinstance(x, (str, bytes)) or hasattr(x, "__fspath__"))
    if len(paths) != len(cs.items):
        raise ConfigError(
            "an accuracy budget without labels judges on calibration images given as files: "
            "pass calibration=DIR or a list of paths"
        )
    return Budget(float(max_drop_pts), paths, None, cs.digest)


__all__ = ["Budget", "make"]
