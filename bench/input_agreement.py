"""Fast vs exact preprocessing: top-5 overlap and logit error on the real photos, with the seeded
ResNet-18 whose BatchNorm statistics are calibrated on real photos (as tests/conftest.py builds it).

    python bench/input_agreement.py [--images DIR] [--draft-margins 1,2,inf] [--json OUT]

``--draft-margins``: a JPEG is decoded at 1/2, 1/4 or 1/8 scale while its short side stays at least
margin x the preset's resize (inf: never). Each margin is also measured on 1920x1080 upscales.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

sys.path.insert(0, str(REPO / "tests"))  # the tests' BN-calibrated ResNet-18
from calibrated import bn_calibrated_resnet18
from shared_photos import SAMPLES

from ipex_resnet.imaging import Preprocessor
from ipex_resnet.imaging import preprocessor as P


def logits(model, arrays) -> torch.Tensor:
    out = []
    with torch.no_grad():
        for i in range(0, len(arrays), 32):
            out.append(model(torch.from_numpy(np.stack(arrays[i : i + 32]))))
    return torch.cat(out)


def agreement(ref: torch.Tensor, got: torch.Tensor) -> dict:
    t5r, t5g = ref.topk(5).indices, got.topk(5).indices
    overlap = [len(set(a.tolist()) & set(b.tolist())) / 5 for a, b in zip(t5r, t5g)]
    err = (ref - got).abs()
    return {
        "images": len(ref),
        "top1_equal": float((t5r[:, 0] == t5g[:, 0]).float().mean()),
        "top5_overlap_mean": float(np.mean(overlap)),
        "top5_overlap_min": float(np.min(overlap)),
        "top5_same_set": float(np.mean([o == 1.0 for o in overlap])),
        "logit_abs_err_max": float(err.max()),
        "logit_abs_err_mean": float(err.mean()),
        "logit_range": float(ref.max() - ref.min()),
    }


def upscale(path: Path) -> bytes:
    """A 1920x1080 JPEG (quality 90) upscaled from a photo."""
    from ipex_resnet.benchmarking.inputs import upscale_jpeg

    return upscale_jpeg(path.read_bytes(), quality=90)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", default=str(SAMPLES))
    ap.add_argument("--draft-margins", default="1,2,inf")
    ap.add_argument("--large", type=int, default=48, help="how many photos to also test as 1920x1080 upscales")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    from torchvision.models import ResNet18_Weights

    photos = sorted(p for p in Path(args.images).glob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
    preset = ResNet18_Weights.DEFAULT.transforms()
    exact = Preprocessor.from_preset(preset, mode="exact")
    model = bn_calibrated_resnet18(photos, exact)
    large = [upscale(p) for p in photos[: args.large]]
    ref = logits(model, [exact(p) for p in photos])
    ref_large = logits(model, [exact(b) for b in large])
    report = {"model": "resnet18, seeded, BatchNorm calibrated on 48 real photos", "results": {}}
    for m in args.draft_margins.split(","):
        P.DRAFT_MARGIN = math.inf if m == "inf" else float(m)
        fast = Preprocessor.from_preset(preset, mode="fast")
        r = {
            "photos": agreement(ref, logits(model, [fast(p) for p in photos])),
            "1920x1080": agreement(ref_large, logits(model, [fast(b) for b in large])),
        }
        report["results"][f"draft_margin={m}"] = r
        for k, v in r.items():
            print(
                f"margin {m:>4} {k:>9}: top-1 equal {v['top1_equal']:.1%}, top-5 overlap mean {v['top5_overlap_mean']:.3f} "
                f"(min {v['top5_overlap_min']:.1f}, same set {v['top5_same_set']:.1%}), logit |err| max "
                f"{v['logit_abs_err_max']:.3f} mean {v['logit_abs_err_mean']:.4f} (logit range {v['logit_range']:.1f})"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
