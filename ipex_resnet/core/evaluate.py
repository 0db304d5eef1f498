"""``ipex-resnet evaluate``: top-1/top-5 accuracy against labels, for every precision.

Labelled data is either

* a ``labels.csv`` in the folder with columns ``file`` (relative to the folder) and ``class_index``
  (the model's output index), like ``imagenet-samples/labels.csv``; or
* a folder per class, each named by the class index (``207/``) or the category name
  (``golden retriever/`` or ``golden_retriever/``, matched case-insensitively).

The metric code is generic over ``classify_fn(list_of_paths) -> N x C logits`` so it can be checked
on any model; :func:`main` builds one per precision with :func:`ipex_resnet.load`.
"""

from __future__ import annotations

import csv
import dataclasses
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ipex_resnet.errors import ConfigError
from ipex_resnet.imaging.decode import IMAGE_EXTENSIONS
from ipex_resnet.quantization.calibration import find_images

ClassifyFn = Callable[[list[Path]], np.ndarray]
LABELS_CSV = "labels.csv"
DEFAULT_PRECISIONS = "fp32,bf16,int8"


@dataclasses.dataclass(frozen=True)
class Row:
    precision: str
    images: int
    top1: float
    top5: float
    #: top-1 agreement with the first path evaluated (the reference, normally eager fp32); None for that one
    agreement: float | None = None
    #: top-1 points lost against the first path (positive: worse); None for that one
    drop_pts: float | None = None


def _norm(name: str) -> str:
    return name.strip().lower().replace("_", " ")


def read_labels(data: str | os.PathLike, categories: Sequence[str] | None = None) -> list[tuple[Path, int]]:
    """``(image path, class index)`` pairs from ``labels.csv`` or a folder per class."""
    root = Path(data).expanduser()
    if not root.is_dir():
        raise ConfigError(
            f"--data {root} is not a folder; pass a folder with {LABELS_CSV} "
            "(columns file,class_index) or one sub-folder per class"
        )
    csv_path = root / LABELS_CSV
    if csv_path.is_file():
        with open(csv_path, newline="") as f:
            reader = csv.DictReader(f)
            cols = set(reader.fieldnames or ())
            if not {"file", "class_index"} <= cols:
                raise ConfigError(f"{csv_path} needs columns 'file' and 'class_index', has {sorted(cols)}")
            pairs = []
            for line, row in enumerate(reader, start=2):
                try:
                    index = int(row["class_index"])
                except (TypeError, ValueError):
                    raise ConfigError(
                        f"{csv_path}:{line}: class_index {row['class_index']!r} is not an integer"
                    ) from None
                path = root / row["file"]
                if not path.is_file():
                    raise ConfigError(f"{csv_path}:{line}: image {path} does not exist")
                pairs.append((path, index))
        if not pairs:
            raise ConfigError(f"{csv_path} lists no images")
        return pairs

    by_name = {_norm(c): i for i, c in enumerate(categories or [])}
    pairs = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if sub.name.isdigit():
            index = int(sub.name)
        elif _norm(sub.name) in by_name:
            index = by_name[_norm(sub.name)]
        else:
            raise ConfigError(
                f"class folder {sub.name!r} is neither a class index nor one of the model's "
                f"category names; rename it (e.g. '207' or 'golden retriever') or use a {LABELS_CSV}"
            )
        pairs += [(p, index) for p in sorted(sub.rglob("*")) if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()]
    if not pairs:
        find_images(root)  # raises the "empty / no images" error naming the folder
        raise ConfigError(
            f"{root} has images but no {LABELS_CSV} and no class sub-folders; "
            f"add a {LABELS_CSV} (columns file,class_index) or one sub-folder per class"
        )
    return pairs


def topk_hits(logits: np.ndarray, labels: Sequence[int], k: int) -> np.ndarray:
    """Per image: is the label among the ``k`` highest logits."""
    logits = np.asarray(logits, dtype=np.float32)
    truth = np.asarray(labels)
    if logits.ndim != 2 or len(logits) != len(truth):
        raise ValueError(f"logits {logits.shape} do not match {len(truth)} labels")
    top = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    return (top == truth[:, None]).any(axis=1)


def logits_for(
    classify_fn: ClassifyFn, paths: Sequence[Path], batch_size: int = 32, desc: str = "evaluating"
) -> np.ndarray:
    from tqdm.auto import tqdm

    chunks = []
    for start in tqdm(range(0, len(paths), batch_size), desc=desc, unit="batch", leave=False):
        chunk = list(paths[start : start + batch_size])
        out = classify_fn(chunk)
        if hasattr(out, "detach"):
            out = out.detach().float().cpu().numpy()
        chunks.append(np.asarray(out, dtype=np.float32))
    return np.concatenate(chunks)


def evaluate(
    samples: Sequence[tuple[Path, int]], classify_fns: dict[str, ClassifyFn], batch_size: int = 32
) -> list[Row]:
    """One :class:`Row` per path (``classify_fns`` in order; the first is the reference)."""
    if not samples:
        raise ConfigError("no labelled images to evaluate")
    paths = [p for p, _ in samples]
    labels = [i for _, i in samples]
    rows, first = [], None
    for name, fn in classify_fns.items():
        logits = logits_for(fn, paths, batch_size, desc=name)
        top1 = float(topk_hits(logits, labels, 1).mean())
        top5 = float(topk_hits(logits, labels, min(5, logits.shape[1])).mean())
        if first is None:
            first = (logits.argmax(1), top1)
            rows.append(Row(name, len(paths), top1, top5))
            continue
        agree = float(np.mean(logits.argmax(1) == first[0]))
        rows.append(Row(name, len(paths), top1, top5, agree, round((first[1] - top1) * 100, 2)))
    return rows


def format_table(rows: Sequence[Row]) -> str:
    ref = rows[0].precision if rows else "-"
    width = max([len("path")] + [len(r.precision) for r in rows])
    lines = [f"{'path':<{width}} {'images':>7} {'top-1':>7} {'top-5':>7} {'drop (pts)':>10}  top-1 = {ref}"]
    for r in rows:
        agree = "-" if r.agreement is None else f"{r.agreement:.1%}"
        drop = "ref" if r.drop_pts is None else f"{r.drop_pts:+.1f}"
        lines.append(f"{r.precision:<{width}} {r.images:>7} {r.top1:>7.1%} {r.top5:>7.1%} {drop:>10}  {agree}")
    return "\n".join(lines)


__all__ = ["Row", "evaluate", "format_table", "read_labels", "topk_hits"]
