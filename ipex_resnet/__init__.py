"""ipex_resnet: a drop-in accelerated TorchVision image classifier for Intel Xeon CPUs.

    import ipex_resnet
    clf = ipex_resnet.load("resnet18", weights="DEFAULT", backend="auto", precision="auto")
    print(clf.plan.describe())
    clf.predict(["cat.jpg"], topk=5)
"""

from .cache import CacheWarning
from .classifier import Classifier, PlanWarning
from .cpu import CPUInfo, probe
from .loader import load, optimize, plan_for
from .errors import BackendUnavailable, ConfigError, ImageError, IpexResnetError, WeightsError
from .policy import Plan, make_plan

__version__ = "0.1.0"

__all__ = [
    "BackendUnavailable", "CPUInfo", "CacheWarning", "Classifier", "ConfigError", "ImageError", "IpexResnetError",
    "Plan", "PlanWarning", "WeightsError", "load", "make_plan", "optimize", "plan_for", "probe", "__version__",
]
