"""A user's model that declares its version (``--model-id`` / ``load(model_id=...)``): a cached load
runs none of the user's code, a new id is a new artifact, and a torchvision model refuses one."""

from __future__ import annotations

import json

import pytest
from user_repo import sh, user_repo  # noqa: F401 - user_repo is a fixture

from ipex_resnet.errors import ConfigError
from ipex_resnet.models.spec import ModelSpec, check_model_id

CLASSIFY = "ipex-resnet classify {photo} --model mypkg.net:build_counted --backend onnxruntime --precision fp32 --json"


def _builds(root) -> int:
    path = root / "builds.txt"
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.mark.slow
def test_a_declared_model_id_skips_the_build_on_a_cached_load(user_repo, photos):
    root, _ = user_repo
    env = {"TINY_BUILDS": str(root / "builds.txt")}
    cmd = CLASSIFY.format(photo=photos[0])
    runs = {}
    for step, extra in (
        ("first", "--model-id v1"),
        ("again", "--model-id v1"),
        ("hashed", ""),
        ("v2", "--model-id v2"),
    ):
        proc = sh(user_repo, f"{cmd} {extra}", **env)
        assert proc.returncode == 0, proc.stderr
        runs[step] = (json.loads(proc.stdout), _builds(root))
    assert runs["first"][1] == 1  # built once: to compile it
    assert runs["again"] == (runs["first"][0], 1)  # the cached artifact, the same answer, and no build
    assert runs["hashed"][1] == 2  # no id: built to hash its weights, as before
    assert runs["v2"][1] == 3  # a new version is another artifact: built again


@pytest.mark.parametrize(
    ("model", "model_id", "words"),
    [
        ("resnet18", "v1", "torchvision model"),
        ("mypkg.net:build", "", "non-empty"),
        ("mypkg.net:build", "x" * 201, "at most 200"),
        ("mypkg.net:build", "v1\n", "printable"),
    ],
)
def test_a_bad_model_id_is_one_clear_error(model, model_id, words):
    with pytest.raises(ConfigError, match=words):
        check_model_id(model, model_id)
    with pytest.raises(ConfigError, match=words):
        ModelSpec(model, model_id=model_id)


def test_the_cli_refuses_a_model_id_for_a_torchvision_model(user_repo, photos):
    proc = sh(user_repo, f"ipex-resnet classify {photos[0]} --weights none --model-id v1")
    assert proc.returncode == 2 and "--model-id" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_the_spec_carries_the_id_to_child_processes_and_commands(tmp_path):
    spec = ModelSpec("mypkg.net:build", "none", model_id="abc123")
    assert ModelSpec.from_dict(spec.to_dict()) == spec
    assert spec.cli_args(tmp_path)[-2:] == ["--model-id", "abc123"]
    assert spec.load_kwargs()["model_id"] == "abc123"
    plain = ModelSpec("mypkg.net:build", "none")
    assert "model_id" not in plain.to_dict() and "model_id" not in plain.load_kwargs()  # keys stay as they were
