"""What a ``weights=`` argument names, decided without importing torch (the warm start needs none)."""

from __future__ import annotations

import os
from pathlib import Path

NO_WEIGHTS = ("none", "random")
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".tar")


def looks_like_path(spec: str) -> bool:
    return os.sep in spec or spec.startswith(".") or spec.lower().endswith(CHECKPOINT_SUFFIXES) or Path(spec).exists()
