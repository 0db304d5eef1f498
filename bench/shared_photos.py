"""Where bench/'s suites and scripts find the shared real photos: ``$IPEX_RESNET_SAMPLES`` (``.ci/run`` sets it
for a clone made elsewhere: the photos beside the checkout it was cloned from), else
``../shared/data/imagenet-samples`` beside this checkout. Read where they are, never copied."""

from __future__ import annotations

import os
from pathlib import Path

SAMPLES = Path(
    os.environ.get("IPEX_RESNET_SAMPLES")
    or Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-samples"
)

__all__ = ["SAMPLES"]
