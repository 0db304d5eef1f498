"""The model the standalone bench scripts measure: the tests' seeded ResNet-18 whose BatchNorm
statistics are calibrated on 48 real photos (no pretrained weights can be downloaded here)."""

from __future__ import annotations

CALIBRATION_PHOTOS = 48


def bn_calibrated_resnet18(photos, pre):
    """``pre(path)`` -> 3xHxW float32 array (the classifier's preprocessing)."""
    import numpy as np
    import torch
    from torchvision.models import resnet18

    torch.manual_seed(0)
    model = resnet18(weights=None)
    step = max(1, len(photos) // CALIBRATION_PHOTOS)
    batch = torch.from_numpy(np.stack([np.asarray(pre(p), dtype=np.float32)
                                       for p in photos[::step][:CALIBRATION_PHOTOS]]))
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batch
    model.train()
    with torch.no_grad():
        model(batch)
    return model.eval()
