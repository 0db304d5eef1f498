"""deploy/: the KServe manifests and the container image, checked without a cluster or a Docker daemon.

The manifests are parsed and cross-checked against what they run: their container arguments go through the
real ``ipex-resnet serve`` parser and ServeConfig, their probe paths are routes of the real app (and answer
as a probe needs while a model loads and after it fails to), their CPU request is the thread plan in the
arguments, and deploy/Dockerfile installs the package with README's own install line and runs the console
script pyproject.toml declares. No torch: the app is built with a loader that never loads a model.
"""

from __future__ import annotations

import json
import re
import shlex
import threading
import time
from pathlib import Path

import pytest

from ipex_resnet.errors import IpexResnetError

yaml = pytest.importorskip("yaml", reason="PyYAML reads the manifests (the ray extra installs it)")
try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli", reason="reading pyproject.toml on Python 3.10 needs tomli")

pytestmark = pytest.mark.any_stack

REPO = Path(__file__).resolve().parents[1]
RUNTIME = REPO / "deploy" / "kserve" / "servingruntime.yaml"
ISVC = REPO / "deploy" / "kserve" / "inferenceservice.yaml"
DOCKERFILE = REPO / "deploy" / "Dockerfile"
DEFAULT_TERMINATION_GRACE_S = 30  # Kubernetes' terminationGracePeriodSeconds when a pod does not set it


# -- reading ------------------------------------------------------------------------------------------
def _one_doc(path: Path) -> dict:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert len(docs) == 1, f"{path.name}: expected one object, found {len(docs)}"
    return docs[0]


@pytest.fixture(scope="module")
def runtime() -> dict:
    return _one_doc(RUNTIME)


@pytest.fixture(scope="module")
def isvc() -> dict:
    return _one_doc(ISVC)


@pytest.fixture(scope="module")
def container(runtime) -> dict:
    named = [c for c in runtime["spec"]["containers"] if c["name"] == "kserve-container"]
    assert len(named) == 1, "KServe runs the container named kserve-container"
    return named[0]


@pytest.fixture(scope="module")
def container_port(container) -> int:
    ports = container["ports"]
    assert len(ports) == 1, "Knative serves exactly one container port"
    assert ports[0]["protocol"] == "TCP"
    return ports[0]["containerPort"]


def _serve_args(words: list[str]):
    """``words`` (what follows ``ipex-resnet serve``) parsed by the CLI's own parser and validated by
    ServeConfig, as ``ipex-resnet serve`` does before it binds the port."""
    from ipex_resnet.cli import build_parser
    from ipex_resnet.cli import serve as serve_cmd
    from ipex_resnet.serve.config import ServeConfig

    assert all(isinstance(w, str) for w in words), f"every argument must be a string in YAML: {words}"
    try:
        args = build_parser(["serve"]).parse_args(["serve", *words])
    except SystemExit as exc:  # argparse printed why
        pytest.fail(f"ipex-resnet serve refuses {shlex.join(words)} (exit {exc.code})")
    assert args.func is serve_cmd.main, "not parsed by the serve command (its module failed to import?)"
    return args, ServeConfig.from_args(args)


@pytest.fixture(scope="module")
def merged_args(container, isvc) -> list[str]:
    """The arguments the pod runs: KServe appends the InferenceService's args to the runtime's."""
    assert container["command"] == ["ipex-resnet", "serve"]
    return [*container.get("args", []), *isvc["spec"]["predictor"]["model"].get("args", [])]


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, rest) per instruction, continuation lines joined, comments dropped."""
    out, pending = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1]
            continue
        word, _, rest = pending.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        pending = ""
    return out


def _instructions(name: str) -> list[str]:
    return [rest for word, rest in _dockerfile() if word == name]


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


# -- the objects and how they refer to each other ------------------------------------------------------
def test_kinds_and_api_versions(runtime, isvc):
    assert (runtime["apiVersion"], runtime["kind"]) == ("serving.kserve.io/v1alpha1", "ServingRuntime")
    assert (isvc["apiVersion"], isvc["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService")


def test_inference_service_uses_the_runtime_with_v2(runtime, isvc):
    model = isvc["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"]
    formats = {f["name"]: f for f in runtime["spec"]["supportedModelFormats"]}
    assert model["modelFormat"]["name"] in formats
    assert formats[model["modelFormat"]["name"]]["autoSelect"] is True
    assert model["protocolVersion"] == "v2"
    assert runtime["spec"]["protocolVersions"] == ["v2"]


# -- the container's command line ------------------------------------------------------------------------
def test_container_args_are_accepted_by_the_real_cli(merged_args, container_port):
    args, cfg = _serve_args(merged_args)
    assert cfg.host == "0.0.0.0", "a pod must listen beyond loopback"
    assert cfg.port == container_port
    assert cfg.tune is False, "--tune would measure candidates with LoadGen at every pod start"
    assert cfg.workers is not None and args.threads is not None, (
        "without --workers and --threads the service sizes itself to the node, not to the pod's CPUs"
    )
    assert args.model and args.weights


def test_runtime_args_alone_are_a_complete_command(container, container_port):
    """An InferenceService that adds no args gets a working service too."""
    args, cfg = _serve_args(container["args"])
    assert (cfg.host, cfg.port, args.model) == ("0.0.0.0", container_port, "resnet18")


def test_shutdown_fits_the_termination_grace_period(merged_args, isvc):
    _, cfg = _serve_args(merged_args)
    grace = isvc["spec"]["predictor"].get("terminationGracePeriodSeconds", DEFAULT_TERMINATION_GRACE_S)
    assert cfg.drain_delay_s + cfg.graceful_timeout_s < grace, (
        "SIGKILL would cut off requests the service is still finishing"
    )


def test_cpu_request_is_the_thread_plan(container, isvc, merged_args):
    args, cfg = _serve_args(merged_args)
    plan = cfg.workers * args.threads
    for where, res in (
        ("servingruntime", container["resources"]),
        ("inferenceservice", isvc["spec"]["predictor"]["model"]["resources"]),
    ):
        assert res["requests"]["cpu"] == res["limits"]["cpu"] == str(plan), (
            f"{where}: cpu must be --workers x --threads = {plan}, requests = limits (Guaranteed QoS)"
        )
        assert res["requests"]["memory"] == res["limits"]["memory"], where
    assert container["resources"] == isvc["spec"]["predictor"]["model"]["resources"]


def test_autoscaling_matches_the_service_limits(isvc, merged_args):
    _, cfg = _serve_args(merged_args)
    pred = isvc["spec"]["predictor"]
    assert 1 <= pred["minReplicas"] <= pred["maxReplicas"]
    assert pred["scaleMetric"] == "concurrency"
    assert pred["scaleTarget"] == cfg.max_batch, "a pod with one full micro-batch in flight gets company"
    assert pred["containerConcurrency"] == cfg.max_queue, (
        "Knative should hold the requests past --max-queue rather than the pod answer 503"
    )


# -- probes against the real app -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def app_paths() -> set[str]:
    from ipex_resnet.serve.app import create_app

    return {r.path for r in create_app(lambda: None).routes}


def test_probe_paths_and_ports_are_the_apps(container, container_port, app_paths):
    for probe in ("readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] in app_paths, f"{probe} {get['path']} is not a route of ipex-resnet serve"
        assert get["port"] == container_port, f"{probe} must probe the container port (Knative requires it)"
    assert {
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/{name}/infer",
        "/v2/models/{name}/ready",
        "/v2/models/{name}",
    } <= app_paths, "protocolVersions: [v2] promises the OIP routes"


def test_probes_answer_as_probes_must_while_loading_and_after_a_failed_load(container):
    """Readiness is 503 while the model loads (no traffic yet), liveness 200 (no restart mid-load); a model
    that fails to load turns liveness 503, so the kubelet restarts the container."""
    import httpx

    from ipex_resnet.serve.app import create_app
    from ipex_resnet.serve.server import ServerThread

    release = threading.Event()

    def loader():
        release.wait(10)
        raise IpexResnetError("test: this model never loads")

    ready, live = container["readinessProbe"]["httpGet"]["path"], container["livenessProbe"]["httpGet"]["path"]
    with ServerThread(create_app(loader)) as srv:
        assert httpx.get(srv.url + live).status_code == 200, "liveness must pass while the model loads"
        assert httpx.get(srv.url + ready).status_code == 503, "readiness must fail until the model is warm"
        release.set()
        deadline = time.monotonic() + 10
        while srv.state.load_error is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert httpx.get(srv.url + live).status_code == 503, "liveness must fail once the model failed to load"
        assert httpx.get(srv.url + ready).status_code == 503


def test_liveness_waits_longer_than_readiness(container):
    ready, live = container["readinessProbe"], container["livenessProbe"]
    assert live["initialDelaySeconds"] >= ready["initialDelaySeconds"]
    assert live["periodSeconds"] * live["failureThreshold"] > ready["periodSeconds"] * ready["failureThreshold"]


# -- the image ------------------------------------------------------------------------------------------
def _readme_plain_install_lines() -> list[str]:
    text = (REPO / "README.md").read_text()
    m = re.search(r"Plain install instead:\s*```bash\n(.*?)```", text, re.S)
    assert m, "README.md has no 'Plain install instead' block"
    return [line.split("#", 1)[0].strip() for line in m.group(1).splitlines() if line.strip()]


def test_dockerfile_installs_the_way_the_readme_does():
    runs = [r for r in _instructions("RUN") if "pip install" in r]
    assert len(runs) == 1, f"one pip install in deploy/Dockerfile, found {runs}"
    assert runs[0] in _readme_plain_install_lines(), f"{runs[0]!r} is not a line of README's plain install"
    extras = re.search(r'-e "\.\[([^\]]*)\]"', runs[0])
    assert extras, runs[0]
    declared = _pyproject()["project"]["optional-dependencies"]
    assert {"serve"} <= set(extras.group(1).split(",")) <= set(declared)


def test_dockerfile_copies_what_the_install_reads():
    copied = " ".join(_instructions("COPY")).split()
    readme = _pyproject()["project"]["readme"]
    for need in ("pyproject.toml", readme, "ipex_resnet"):
        assert need in copied, f"deploy/Dockerfile does not copy {need}"


def test_dockerfile_base_python_meets_requires_python():
    (base,) = _instructions("FROM")
    m = re.fullmatch(r"python:(\d+)\.(\d+)-slim", base)
    assert m, base
    floor = re.fullmatch(r">=(\d+)\.(\d+)", _pyproject()["project"]["requires-python"])
    assert (int(m[1]), int(m[2])) >= (int(floor[1]), int(floor[2]))


def test_dockerfile_runs_the_console_script_on_the_container_port(container, container_port):
    (entry,) = _instructions("ENTRYPOINT")
    (cmd,) = _instructions("CMD")
    entry, cmd = json.loads(entry), json.loads(cmd)
    assert entry == container["command"] == ["ipex-resnet", "serve"]
    assert _pyproject()["project"]["scripts"].get(entry[0]) == "ipex_resnet.cli:main"
    _, cfg = _serve_args(cmd)
    (exposed,) = _instructions("EXPOSE")
    assert (cfg.host, cfg.port, int(exposed)) == ("0.0.0.0", container_port, container_port)


def test_dockerfile_runs_as_a_numeric_non_root_user():
    (user,) = _instructions("USER")
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"USER {user}: runAsNonRoot can verify only a numeric non-zero uid"


def test_docs_build_the_image_the_runtime_runs(container):
    doc = (REPO / "docs" / "scale-out.md").read_text()
    assert f"docker build -f deploy/Dockerfile -t {container['image']} ." in doc
