"""Options shared by every subcommand that loads a model, declared once."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ipex_resnet.models.spec import ModelSpec


def add_plan_options(p: argparse.ArgumentParser | argparse._ArgumentGroup, *, precision: bool = True) -> None:
    """--backend/--precision/--threads and the INT8 options, shared by every subcommand that loads a model."""
    p.add_argument(
        "--backend",
        default="auto",
        help="auto|ipex|inductor|openvino|onnxruntime|eager (default: auto, by measurement)",
    )
    if precision:
        p.add_argument(
            "--precision",
            default="auto",
            help="auto|bf16|fp32|int8 (default: auto, never int8; int8 needs --calibration once)",
        )
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default: from the plan)")
    p.add_argument(
        "--streams",
        default="auto",
        metavar="N",
        help="inference streams: model calls that run at once, each on threads/N cores "
        "(default: auto, measured with --backend auto, else 1)",
    )
    p.add_argument(
        "--calibration",
        default=None,
        metavar="DIR",
        help="int8: folder of calibration images (once; the quantized artifact is cached)",
    )
    p.add_argument(
        "--labels",
        default=None,
        metavar="DIR",
        help="int8: labelled images (a folder with labels.csv, or one sub-folder per class) to judge "
        "the quantized model by the top-1 points it loses against fp32",
    )
    p.add_argument(
        "--max-accuracy-drop",
        type=float,
        default=None,
        metavar="PTS",
        help="the top-1 points INT8 may lose against fp32 (with --labels; default: 1.0; without "
        "labels, points of top-1 disagreement with fp32); with --precision auto, the budget "
        "within which the measured auto may pick INT8",
    )
    p.add_argument("--accept-accuracy", action="store_true", help="int8: load even if it misses the accuracy gate")


def int8_kwargs(args: argparse.Namespace) -> dict:
    """``load()``'s INT8 arguments from the options of :func:`add_plan_options`."""
    from ipex_resnet.errors import ConfigError

    drop = getattr(args, "max_accuracy_drop", None)
    if drop is not None and drop < 0:
        raise ConfigError(f"--max-accuracy-drop must be at least 0 points, got {drop}")
    return {
        "calibration": args.calibration,
        "accept_accuracy": args.accept_accuracy,
        "labels": getattr(args, "labels", None),
        "accuracy_gate": drop,
        "accuracy_budget": drop,
    }


def add_model_options(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """The model spec (--model, --weights, the preset, --categories), shared by every subcommand that
    loads a model; :func:`model_spec` turns them into a ``ModelSpec``, :func:`model_kwargs` into ``load()``'s
    arguments."""
    p.add_argument(
        "--model",
        default="resnet18",
        help="a torchvision classification model name (default: resnet18), or your own model as an "
        "import path pkg.module:attr (an nn.Module, or a callable returning one)",
    )
    p.add_argument(
        "--weights",
        default="DEFAULT",
        help="DEFAULT | an enum name like IMAGENET1K_V1 | PATH to a state dict (weights_only) | none",
    )
    p.add_argument(
        "--categories",
        default=None,
        metavar="FILE",
        help="class names, one per line, one per model output (default: the weights' own, or "
        "ImageNet's for a 1000-class model)",
    )
    p.add_argument(
        "--preset",
        default=None,
        metavar="JSON",
        help="preprocessing preset file: {resize_size, crop_size, mean, std, interpolation} "
        "(default: the weights' own preset; ImageNet's 256/224 for your own model)",
    )
    p.add_argument(
        "--model-id",
        default=None,
        metavar="ID",
        help="your own model's version, e.g. a git commit or a release tag: the compiled-artifact cache trusts "
        "it instead of building the model to hash its weights, so a cached load runs none of your code. "
        "Change it whenever the model's code or weights change (default: hash them on every load)",
    )
    p.add_argument("--resize", type=int, default=None, metavar="N", help="preset: resize the short side to N")
    p.add_argument("--crop", type=int, default=None, metavar="N", help="preset: center crop NxN")
    p.add_argument("--mean", default=None, metavar="R,G,B", help="preset: per-channel mean (1 or 3 values)")
    p.add_argument("--std", default=None, metavar="R,G,B", help="preset: per-channel std (1 or 3 values)")
    p.add_argument("--interpolation", default=None, help="preset: bilinear (default) | bicubic | nearest | ...")


def model_spec(args: argparse.Namespace) -> ModelSpec:
    """The :class:`~ipex_resnet.models.spec.ModelSpec` that the options of :func:`add_model_options`
    describe (bad ones: ConfigError)."""
    from ipex_resnet.models.spec import ModelSpec

    return ModelSpec.from_options(
        args.model,
        args.weights,
        preset=args.preset,
        resize=args.resize,
        crop=args.crop,
        mean=args.mean,
        std=args.std,
        interpolation=args.interpolation,
        categories=args.categories,
        model_id=args.model_id,
    )


def model_kwargs(args: argparse.Namespace) -> dict:
    """``load()``'s model arguments (the model and its :meth:`ModelSpec.load_kwargs`) from the options of
    :func:`add_model_options` (bad ones: ConfigError)."""
    spec = model_spec(args)
    return {"model": spec.model, **spec.load_kwargs()}
