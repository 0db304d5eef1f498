"""ipex_resnet: a drop-in accelerated TorchVision image classifier for Intel Xeon CPUs.

    import ipex_resnet
    clf = ipex_resnet.load("resnet18", weights="DEFAULT", backend="auto", precision="auto")
    print(clf.plan.describe())
    clf.predict(["cat.jpg"], topk=5)

The layers, lowest first, are described in docs/architecture.md.
"""

from ipex_resnet.core.api import load, optimize, plan_for, probe
from ipex_resnet.core.cache import CacheWarning
from ipex_resnet.core.classifier import Classifier, PlanWarning
from ipex_resnet.core.policy import Plan, make_plan
from ipex_resnet.errors import (
    AccuracyGateError,
    BackendUnavailable,
    ConfigError,
    ImageError,
    IpexResnetError,
    WeightsError,
)
from ipex_resnet.hardware.cpu import CPUInfo
from ipex_resnet.util.version import __version__

__all__ = [
    "AccuracyGateError",
    "BackendUnavailable",
    "CPUInfo",
    "CacheWarning",
    "Classifier",
    "ConfigError",
    "ImageError",
    "IpexResnetError",
    "Plan",
    "PlanWarning",
    "WeightsError",
    "load",
    "make_plan",
    "optimize",
    "plan_for",
    "probe",
    "__version__",
]
