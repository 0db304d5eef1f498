"""Models and weights: any TorchVision classifier by name, or a user's nn.Module.

Weights resolve through torchvision's own weights API, so online users get the real download into
torch hub's cache; ``PATH`` loads a local state dict (``weights_only=True``); ``none`` is random init.
"""

from __future__ import annotations

import difflib
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import torch

from ipex_resnet.util.torchvision_import import import_torchvision

torchvision = import_torchvision()  # without torch._dynamo: 1.8 s of the eager path's cold start
from torchvision.models import get_model, get_model_weights, list_models  # noqa: E402
from torchvision.transforms._presets import ImageClassification  # noqa: E402

from ipex_resnet.errors import ConfigError, WeightsError, first_line  # noqa: E402
from ipex_resnet.imaging.preset import PresetSpec  # noqa: E402
from ipex_resnet.models.spec import import_model, is_import_path  # noqa: E402
from ipex_resnet.models.weights import NO_WEIGHTS, looks_like_path  # noqa: E402

DOWNLOAD_TIMEOUT_S = 60.0
RANDOM_INIT_LABEL = "none (random init: scores and labels are meaningless)"
# The ImageNet preset every torchvision ResNet uses; the fallback for a user's module.
IMAGENET_PRESET = ImageClassification(crop_size=224, resize_size=256)


@dataclass
class LoadedModel:
    module: torch.nn.Module
    name: str
    weights: str  # human label, e.g. "ResNet18_Weights.IMAGENET1K_V1" or RANDOM_INIT_LABEL
    categories: list[str]
    transforms: torch.nn.Module | PresetSpec  # the weights' torchvision preset, or the one given
    random_init: bool = False


def classification_models() -> list[str]:
    return list_models(module=torchvision.models)


def imagenet_categories() -> list[str]:
    """ImageNet-1k class names, as torchvision ships them (no download)."""
    return list(get_model_weights("resnet18").DEFAULT.meta["categories"])


def check_model_name(name: str) -> str:
    """``name`` (lower case) when it is a torchvision classification model, else ConfigError with the close ones."""
    name = name.lower()
    known = classification_models()
    if name not in known:
        close = difflib.get_close_matches(name, known, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see torchvision.models.list_models()"
        raise ConfigError(f"unknown model {name!r}: not a torchvision classification model{hint}")
    return name


def _weights_enum(name: str, spec: str):
    enum = get_model_weights(name)
    prefix, _, key = spec.rpartition(".")
    if prefix and prefix != enum.__name__:
        raise ConfigError(f"weights {spec!r} are not weights of {name} ({enum.__name__})")
    if key.upper() == "DEFAULT":
        return enum.DEFAULT
    try:
        return enum[key.upper()]
    except KeyError:
        raise ConfigError(
            f"unknown weights {spec!r} for {name}: choose DEFAULT, "
            f"{', '.join(w.name for w in enum)}, a checkpoint path, or none"
        ) from None


def cache_path(weights) -> Path:
    """Where torch hub keeps (and looks for) a downloaded weights file."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)


def _download_state_dict(weights) -> dict:
    target = cache_path(weights)
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        return weights.get_state_dict(progress=False, check_hash=True)
    except Exception as exc:  # URLError, HTTPError, hash mismatch, socket timeout...
        reason = getattr(exc, "reason", None) or exc
        raise WeightsError(
            f"could not get {weights} from {weights.url} ({reason}). Offline? Download that file on a "
            f"machine with network access and put it at {target} (torch hub's cache; TORCH_HOME moves it), "
            f"or pass weights=PATH to a state dict, or weights='none' for random init"
        ) from None
    finally:
        socket.setdefaulttimeout(old)


def load_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a state dict safely (``weights_only=True``), unwrapping common containers."""
    p = Path(path)
    if not p.is_file():
        raise WeightsError(f"checkpoint {str(p)!r} not found")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(
            f"checkpoint {str(p)!r} is not a loadable weights-only state dict: {first_line(exc, None)}"
        ) from None
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"checkpoint {str(p)!r} does not hold a state dict of tensors")
    out = {}
    for k, v in obj.items():
        for prefix in ("module.", "_orig_mod."):
            if k.startswith(prefix):
                k = k[len(prefix) :]
        out[k] = v
    return out


def _apply_state_dict(module: torch.nn.Module, sd: dict, origin: str) -> None:
    try:
        module.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()
        detail = " ".join(s.strip() for s in first[1:3]) if len(first) > 1 else first[0]
        raise WeightsError(f"{origin} does not fit {type(module).__name__}: {detail[:400]}") from None


def _num_outputs(module: torch.nn.Module) -> int | None:
    last = None
    for m in module.modules():
        if isinstance(m, torch.nn.Linear):
            last = m
    return last.out_features if last is not None else None


def resolve(
    model: str | torch.nn.Module = "resnet18",
    weights: str | os.PathLike | None = "DEFAULT",
    *,
    categories: list[str] | None = None,
    transforms: torch.nn.Module | PresetSpec | None = None,
) -> LoadedModel:
    """Build the model and its weights, categories and preprocessing preset. ``model`` is a torchvision
    name, an import path ``pkg.module:attr`` (an nn.Module or a callable returning one), or a module."""
    if isinstance(model, str) and is_import_path(model):
        return _user_module(import_model(model), model, weights, categories, transforms)
    if isinstance(model, torch.nn.Module):
        return _user_module(model, type(model).__name__, weights, categories, transforms)
    if not isinstance(model, str):
        raise ConfigError(
            f"model must be a torchvision model name, an import path pkg.module:attr or an "
            f"nn.Module, not {type(model).__name__}"
        )
    loaded = _torchvision_model(model, weights, categories, transforms)
    _check_categories(loaded.categories, loaded.module, loaded.name)
    return loaded


def _check_categories(categories: list[str], module: torch.nn.Module, name: str) -> None:
    n = _num_outputs(module)
    if n is not None and len(categories) != n:
        raise ConfigError(f"{len(categories)} categories given for {name}, which has {n} outputs")


def _user_module(model: torch.nn.Module, name: str, weights, categories, transforms) -> LoadedModel:
    if weights not in (None, "DEFAULT", *NO_WEIGHTS) and looks_like_path(str(weights)):
        _apply_state_dict(model, load_checkpoint(weights), f"checkpoint {weights}")
        label = f"checkpoint {weights}"
    elif str(weights).lower() not in ("none", "default", *NO_WEIGHTS):
        raise ConfigError(
            f"weights {weights!r} for {name}: a user model takes a checkpoint PATH, or DEFAULT for "
            "the weights it comes with"
        )
    else:
        label = "user module (its own weights)"
    n = _num_outputs(model)
    cats = categories or (imagenet_categories() if n in (None, 1000) else [f"class_{i}" for i in range(n)])
    _check_categories(list(cats), model, name)
    return LoadedModel(model.eval(), name, label, list(cats), transforms or IMAGENET_PRESET)


def _torchvision_model(model: str, weights, categories, transforms) -> LoadedModel:

    name = check_model_name(model)
    default = get_model_weights(name).DEFAULT
    spec = "none" if weights is None else os.fspath(weights)
    if spec.lower() in NO_WEIGHTS:
        with torch.random.fork_rng():  # seeded: a cached artifact and a rebuilt one hold the same weights
            torch.manual_seed(0)
            module = get_model(name, weights=None)
        return LoadedModel(
            module.eval(),
            name,
            RANDOM_INIT_LABEL,
            list(categories or default.meta["categories"]),
            transforms or default.transforms(),
            random_init=True,
        )
    if looks_like_path(spec):
        sd = load_checkpoint(spec)
        fc = [v for k, v in sd.items() if v.ndim == 2]
        n = fc[-1].shape[0] if fc else 1000
        module = get_model(name, weights=None, num_classes=n)
        _apply_state_dict(module, sd, f"checkpoint {spec!r}")
        cats = categories or (list(default.meta["categories"]) if n == 1000 else [f"class_{i}" for i in range(n)])
        return LoadedModel(module.eval(), name, f"checkpoint {spec}", list(cats), transforms or default.transforms())
    w = _weights_enum(name, spec)
    module = get_model(name, weights=None, num_classes=len(w.meta["categories"]))
    _apply_state_dict(module, _download_state_dict(w), str(w))
    return LoadedModel(
        module.eval(), name, str(w), list(categories or w.meta["categories"]), transforms or w.transforms()
    )
