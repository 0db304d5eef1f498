"""One object per concept: the model spec (:class:`ModelSpec`, hashable, one value through every benchmark
layer) and an option declared once with its limits (:class:`Param`, shared by ``ipex-resnet serve`` and
``ipex-resnet bench``), each bad value refused in one line naming the option."""

from __future__ import annotations

import argparse
import math

import pytest

from ipex_resnet.benchmarking import options as O
from ipex_resnet.errors import ConfigError
from ipex_resnet.imaging.preset import PresetSpec
from ipex_resnet.models.spec import ModelSpec
from ipex_resnet.serve.config import ServeConfig
from ipex_resnet.util.params import Param

pytestmark = pytest.mark.any_stack


def test_model_spec_is_one_hashable_value_that_round_trips(tmp_path):
    spec = ModelSpec("mypkg.net:build", "model.pth", {"crop_size": 64}, ["a", "b"])  # type: ignore[arg-type]
    assert spec.preset == PresetSpec(crop_size=64) and spec.categories == ("a", "b")
    assert hash(spec) == hash(ModelSpec.from_dict(spec.to_dict())) and spec == ModelSpec.from_dict(spec.to_dict())
    assert {spec: 1}[ModelSpec("mypkg.net:build", "model.pth", PresetSpec(crop_size=64), ("a", "b"))] == 1
    assert spec.load_kwargs() == {"weights": "model.pth", "transforms": spec.preset, "categories": ["a", "b"]}
    args = spec.cli_args(tmp_path)
    assert args[:4] == ["--model", "mypkg.net:build", "--weights", "model.pth"]
    assert (
        ModelSpec.from_options(
            "mypkg.net:build", "model.pth", preset=args[args.index("--preset") + 1], categories=args[-1]
        )
        == spec
    )
    assert ModelSpec().random_init and ModelSpec().preset_dict is None and not ModelSpec(weights="DEFAULT").random_init


@pytest.mark.parametrize(
    ("param", "value", "message"),
    [
        (Param("", 1, int, minimum=1), 0, "--x must be at least 1, got 0"),
        (Param("", 1, int, minimum=4, maximum=1000), 2.5, "--x must be a whole number from 4 to 1000, got 2.5"),
        (Param("", 1.0, float, positive=True, unit="seconds"), 0, "--x must be a positive number of seconds, got 0"),
        (Param("", 1.0, float, positive=True), math.inf, "--x must be a positive number, got inf"),
        (Param("", 1.0, float, minimum=0), math.nan, "--x must be 0 or more, got nan"),
        (Param("", 1.0, float, minimum=0), "fast", "--x must be a number, got 'fast'"),
        (Param("", 1, int, minimum=0), True, "--x must be a whole number, got True"),
        (Param("", "a", choices=("a", "b")), "c", "--x must be one of a, b, got 'c'"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_option(param, value, message):
    with pytest.raises(ConfigError) as exc:
        param.check("--x", value)
    assert str(exc.value) == message


def test_a_good_value_comes_back_as_its_type():
    assert Param("", 1.0, float, minimum=0).check("--x", 2) == 2.0
    assert Param("", 1, int, minimum=0).check("--x", "3") == 3
    assert Param("", None, int, minimum=1).check("--x", None) is None  # not given: the default applies


def test_serve_and_bench_declare_their_limits_the_same_way():
    with pytest.raises(ConfigError, match="^--max-batch must be at least 1, got 0$"):
        ServeConfig(max_batch=0)
    assert ServeConfig(max_wait_ms=2).max_wait_ms == 2.0
    with pytest.raises(ConfigError, match="^--budget must be a positive number of seconds, got 0$"):
        O.settings({"budget": 0})
    with pytest.raises(ConfigError, match="^--bench-rounds must be at least 2, got 1$"):  # a pytest-only option
        O.settings({"rounds": 1})
    # each default is written once: the help shows it, Settings starts from it, --quick has its own
    parser = argparse.ArgumentParser()
    O.add_cli_arguments(parser)
    budget = next(a for a in parser._actions if a.dest == "budget")
    assert budget.default is None and budget.help.endswith("(default: 15; --quick: 4)")
    assert O.Settings().budget == 15.0 and O.Settings().scenario_budget == 10.0
