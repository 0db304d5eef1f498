"""``ipex-resnet quantize``: calibrate and quantize a model to INT8 for one engine, cache the artifact,
and print its accuracy report against FP32 on held-out calibration images.

    ipex-resnet quantize --model resnet50 --weights DEFAULT --calibration ./calib_images/ [--backend openvino]
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings

from ipex_resnet.cli.options import add_model_options, add_plan_options, int8_kwargs, model_kwargs
from ipex_resnet.core.api import load
from ipex_resnet.errors import ConfigError
from ipex_resnet.util.stdout import stdout_to_stderr


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_options(p)
    add_plan_options(p, precision=False)
    p.add_argument("--json", action="store_true", help="machine-readable output")


def main(args: argparse.Namespace) -> int:
    if not args.calibration:
        raise ConfigError("quantize needs --calibration DIR: a folder of images like the ones you will classify")
    with warnings.catch_warnings(record=True) as caught, stdout_to_stderr(args.json):
        warnings.simplefilter("always")
        clf = load(
            **model_kwargs(args),
            backend=args.backend,
            precision="int8",
            threads=args.threads,
            streams=args.streams,
            measure=False,
            **int8_kwargs(args),
        )
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    art = clf.artifact or {}
    if args.json:
        print(
            json.dumps(
                {
                    "backend": clf.plan.backend,
                    "precision": "int8",
                    "entry": art.get("entry"),
                    "cached": art.get("hit"),
                    "info": art.get("info"),
                    "accuracy": art.get("accuracy"),
                    "accuracy_labelled": art.get("accuracy_labelled"),
                    "kept_float": (art.get("info") or {}).get("kept_float", []),
                },
                indent=2,
            )
        )
    else:
        print(f"{clf.plan.backend}/int8: {'cached already' if art.get('hit') else 'quantized'}: {art.get('entry')}")
        print(f"  {clf.plan.reasons['precision']}")
    return 0
