"""deploy/ as far as a machine without a container engine can check it.

- compose.yaml, the Kubernetes manifests and the Helm values parse and have the structure a
  deployment needs (images pinned, env files, healthchecks and start order, probes, resources,
  a SIGTERM grace longer than the worker's own);
- the env files name every secret, keep values out, and make-env.sh writes consistent ones;
- the search attributes are the ones AiOs sets, and namespace.sh registers them on a real
  Temporal server;
- the Dockerfile copies files that exist and installs the package's runtime closure at the
  versions of requirements.lock, without the test tools;
- `aios worker` started with exactly the environment compose gives its container (hosts and
  secrets swapped for this machine's) reaches Temporal and polls, as `aios-probe` sees it.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import signal
import subprocess
import sys
import tomllib
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from pydantic import SecretStr

from aios.config import Settings
from aios.devstack import DevServerConfig, start_temporal, stop_temporal
from aios.workflows.attributes import REQUIRED
from tests.conftest import ROOT, RecordingSmtp, dev_config, free_port

DEPLOY = ROOT / "deploy"
KUBE = DEPLOY / "kubernetes"
BIN = Path(sys.executable).parent
AIOS_SERVICES = ("worker", "memory-worker", "serve")
ONE_SHOT = ("temporal-schema", "temporal-namespace")
# Tools in requirements.lock that the image must not carry.
DEV_ONLY = {"pytest", "pytest-asyncio", "pytest-timeout", "ruff", "mypy", "playwright", "radicale"}


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def compose() -> dict[str, Any]:
    return dict(load(DEPLOY / "compose.yaml"))


def secret_settings() -> set[str]:
    """Every AIOS_* variable whose setting is a secret."""
    return {
        f"AIOS_{name.upper()}"
        for name, field in Settings.model_fields.items()
        if SecretStr in getattr(field.annotation, "__args__", (field.annotation,))
    }


def setting_names() -> set[str]:
    return {f"AIOS_{name.upper()}" for name in Settings.model_fields}


def env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines as compose reads an env file (comments and blank lines skipped)."""
    values = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not KEY=VALUE: {raw!r}"
        values[key.strip()] = value
    return values


def commented_keys(path: Path) -> set[str]:
    return set(re.findall(r"^#\s*(AIOS_[A-Z0-9_]+)=", path.read_text(), re.M))


def settings_from(env: dict[str, str]) -> Settings:
    """The settings a process with exactly ``env`` reads (no .env file, no other AIOS_*)."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("AIOS_")}
    for key in saved:
        del os.environ[key]
    os.environ.update(env)
    try:
        return Settings(_env_file=None)
    finally:
        for key in env:
            os.environ.pop(key, None)
        os.environ.update(saved)


@pytest.fixture(scope="module")
def made_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The env files `deploy/make-env.sh` writes, in a folder of their own."""
    out = tmp_path_factory.mktemp("env")
    subprocess.run([DEPLOY / "make-env.sh", out], check=True, capture_output=True)
    return out


def container_env(service: str, env_dir: Path) -> dict[str, str]:
    """What compose gives ``service``'s container: its env files, then its environment, over
    the image's own ENV lines."""
    spec = compose()["services"][service]
    env = dockerfile_env()
    for name in spec.get("env_file", []):
        env.update(env_file(env_dir / name))
    env.update({k: str(v) for k, v in (spec.get("environment") or {}).items()})
    return env


def dockerfile_lines() -> list[str]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip() and line[0] != "#"]


def dockerfile_env() -> dict[str, str]:
    """The ENV of the final stage (AIOS_* only: PATH and the like are the image's business)."""
    final = dockerfile_lines()
    start = max(i for i, line in enumerate(final) if line.startswith("FROM "))
    env: dict[str, str] = {}
    for line in final[start:]:
        if line.startswith("ENV "):
            for item in shlex.split(line[4:]):
                key, _, value = item.partition("=")
                if key.startswith("AIOS_"):
                    env[key] = value
    return env


# --- compose.yaml ------------------------------------------------------------------------------


def test_compose_has_the_stack_with_pinned_images_and_env_files() -> None:
    services = compose()["services"]
    assert set(services) >= {
        "postgres",
        "temporal-schema",
        "temporal",
        "temporal-namespace",
        "temporal-ui",
        "qdrant",
        *AIOS_SERVICES,
    }
    for name, spec in services.items():
        image = spec.get("image", "")
        assert re.fullmatch(r"[a-z0-9./-]+:[A-Za-z0-9._-]+", image), f"{name}: image {image!r}"
        assert not image.endswith(":latest"), f"{name}: pin {image} to a release"
        for env in spec.get("env_file", []):
            assert (DEPLOY / f"{env}.example").is_file(), f"{name}: no {env}.example"
            assert (DEPLOY / env).name.endswith(".env")
    assert services["temporal"]["image"].startswith("temporalio/server:")
    for name in ONE_SHOT:
        assert services[name]["image"].startswith("temporalio/admin-tools:")
        assert services[name]["restart"] == "no"
    assert services["temporal-ui"]["image"].startswith("temporalio/ui:")
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["qdrant"]["image"].startswith("qdrant/qdrant:")
    commands = {name: services[name]["command"] for name in AIOS_SERVICES}
    assert commands == {
        "worker": ["worker", "--role", "general"],
        "memory-worker": ["worker", "--role", "memory"],
        "serve": ["serve"],
    }
    for name in AIOS_SERVICES:
        spec = services[name]
        assert spec["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
        assert spec["image"] == services["worker"]["image"]  # one image, three commands
        assert spec["env_file"] == ["aios.env"]


def test_compose_start_order_and_healthchecks() -> None:
    services = compose()["services"]
    for name, spec in services.items():
        for dependency, how in (spec.get("depends_on") or {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            condition = how["condition"]
            if dependency in ONE_SHOT:
                assert condition == "service_completed_successfully", (name, dependency)
            else:
                assert condition == "service_healthy", (name, dependency)
                assert "healthcheck" in services[dependency], f"{dependency}: no healthcheck"
        if name not in ONE_SHOT and name != "temporal-ui":
            check = spec.get("healthcheck")
            assert check and check["test"][0] in ("CMD", "CMD-SHELL"), f"{name}: no healthcheck"
    order = {name: set(spec.get("depends_on") or {}) for name, spec in services.items()}
    assert order["temporal-schema"] == {"postgres"}
    assert order["temporal"] == {"temporal-schema"}
    assert order["temporal-namespace"] == {"temporal"}
    for worker in ("worker", "memory-worker"):
        assert order[worker] == {"postgres", "qdrant", "temporal-namespace"}
    assert order["serve"] == {"worker"}  # the worker applied the migrations
    assert services["memory-worker"]["healthcheck"]["test"] == [
        "CMD",
        "aios-probe",
        "worker",
        "--memory",
    ]
    for name in ("worker", "memory-worker"):
        grace = services[name]["stop_grace_period"]
        assert timedelta(seconds=int(grace.removesuffix("s"))) > worker_shutdown_grace()


def test_compose_mounts_files_that_exist_and_keeps_secrets_in_env_files() -> None:
    services = compose()["services"]
    for name, spec in services.items():
        for volume in spec.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (DEPLOY / source).exists(), f"{name}: {source} does not exist"
        written = {str(k) for k in (spec.get("environment") or {})}
        leaked = {k for k in written if k in secret_settings() or "PASSWORD" in k or "PWD" in k}
        assert not leaked, f"{name}: secrets belong in an env file, not compose.yaml: {leaked}"
        for key in written:
            if key.startswith("AIOS_"):
                assert key in setting_names(), f"{name}: {key} is not an AiOs setting"
    serve = services["serve"]["environment"]
    assert serve["AIOS_SERVE_HOST"] == "0.0.0.0" and serve["AIOS_SERVE_ALLOW_REMOTE"] == "true"
    for name in ("temporal", "temporal-ui", "serve"):
        for port in services[name].get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond this host"


# --- env files -------------------------------------------------------------------------------


def test_the_env_example_names_every_secret_and_holds_no_value() -> None:
    example = DEPLOY / "aios.env.example"
    required = env_file(example)
    named = set(required) | commented_keys(example)
    missing = secret_settings() - named
    assert not missing, f"aios.env.example does not name {sorted(missing)}"
    for key in secret_settings() & set(required):
        assert required[key] == "", f"aios.env.example gives {key} a value"
    assert not re.search(r"^#\s*AIOS_\w+=\S", example.read_text(), re.M)
    unknown = (set(required) | commented_keys(example)) - setting_names()
    assert not unknown, f"not AiOs settings: {unknown}"
    for other in ("postgres.env.example", "temporal.env.example"):
        assert all(v == "" for v in env_file(DEPLOY / other).values()), other
    for name in ("aios.env", "postgres.env", "temporal.env", "kubernetes/secret.yaml"):
        ignored = subprocess.run(["git", "check-ignore", "-q", f"deploy/{name}"], cwd=ROOT)
        assert ignored.returncode == 0, f"deploy/{name} must be git-ignored"


def test_make_env_writes_secrets_that_agree(made_env: Path) -> None:
    aios = env_file(made_env / "aios.env")
    postgres = env_file(made_env / "postgres.env")
    temporal = env_file(made_env / "temporal.env")
    assert all(len(v) >= 32 for v in postgres.values())
    assert temporal["POSTGRES_PWD"] == temporal["SQL_PASSWORD"] == postgres["TEMPORAL_DB_PASSWORD"]
    assert aios["AIOS_DATABASE_URL"] == (
        f"postgresql://aios:{postgres['AIOS_DB_PASSWORD']}@postgres:5432/aios"
    )
    assert len({*postgres.values(), aios["AIOS_SERVE_SECRET_KEY"]}) == 4  # all different
    for path in made_env.iterdir():
        assert path.stat().st_mode & 0o077 == 0, f"{path.name} is readable by others"
    again = subprocess.run([DEPLOY / "make-env.sh", made_env], capture_output=True, text=True)
    assert again.returncode == 1 and "exists" in again.stderr  # never overwrites secrets
    assert env_file(made_env / "aios.env") == aios


@pytest.mark.parametrize("service", AIOS_SERVICES)
def test_each_aios_container_gets_valid_settings(service: str, made_env: Path) -> None:
    settings = settings_from(container_env(service, made_env))
    assert settings.temporal_address == "temporal:7233"
    assert settings.temporal_namespace == "aios"
    assert settings.qdrant_url == "http://qdrant:6333"
    assert settings.database_url is not None
    assert settings.database_url.get_secret_value().startswith("postgresql://aios:")
    assert settings.serve_secret_key is not None and not settings.smtp_embedded
    assert not settings.identity_is_placeholder
    assert str(settings.state_dir) == "/var/lib/aios"
    if service == "serve":
        assert settings.serve_host == "0.0.0.0"
        assert settings.console_url == "https://aios.example.com"


# --- search attributes -----------------------------------------------------------------------


def registered_in_scripts() -> list[dict[str, str]]:
    shell = (DEPLOY / "temporal" / "namespace.sh").read_text()
    helm = load(KUBE / "temporal-values.yaml")["extraObjects"][0]
    dev = load(ROOT / "temporal-dev.yaml")["search_attributes"]
    return [
        dict(re.findall(r"\b(Aios\w+):(\w+)\b", shell)),
        dict(re.findall(r"\b(Aios\w+):(\w+)\b", helm)),
        dict(dev),
    ]


def test_every_place_registers_the_search_attributes_aios_sets() -> None:
    assert {"AiosProcess", "AiosAwaitingApproval", "AiosOutcome"} <= set(REQUIRED)
    for found in registered_in_scripts():
        assert found == REQUIRED


@pytest.fixture(scope="module")
def own_temporal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServerConfig]:
    """A dev server of this module's own: the probe looks for pollers from this host, and no
    other test's worker may be one of them."""
    state = tmp_path_factory.mktemp("deploy-temporal")
    config = dev_config()
    start_temporal(state, config)
    yield config
    stop_temporal(state, config)


async def test_namespace_script_registers_namespace_and_attributes(
    own_temporal: DevServerConfig,
) -> None:
    from aios.temporal import connect

    namespace = f"deploy-{uuid.uuid4().hex[:8]}"
    env = {
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "TEMPORAL_ADDRESS": own_temporal.address,
        "AIOS_TEMPORAL_NAMESPACE": namespace,
        "NAMESPACE_RETENTION": "2d",
    }
    script = str(DEPLOY / "temporal" / "namespace.sh")
    for _ in range(2):  # a second run finds everything in place and changes nothing
        done = await asyncio.to_thread(
            subprocess.run, ["/bin/sh", script], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stdout + done.stderr
    assert f"namespace {namespace} exists" in done.stdout
    assert done.stdout.count("exists") == 1 + len(REQUIRED)

    settings = Settings(
        temporal_address=own_temporal.address, temporal_namespace=namespace, _env_file=None
    )
    client = await connect(settings)
    from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest

    listed = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    from temporalio.api.enums.v1 import IndexedValueType

    types = {
        name: IndexedValueType.Name(kind).removeprefix("INDEXED_VALUE_TYPE_").title()
        for name, kind in listed.custom_attributes.items()
    }
    assert {name: types.get(name) for name in REQUIRED} == {
        name: kind.title() for name, kind in REQUIRED.items()
    }


# --- Kubernetes --------------------------------------------------------------------------------


def kube_objects() -> list[tuple[str, dict[str, Any]]]:
    objects = []
    for path in sorted(KUBE.glob("*.yaml")):
        if path.name in ("temporal-values.yaml", "kustomization.yaml"):
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                objects.append((path.name, doc))
    return objects


def deployments() -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for _, o in kube_objects() if o["kind"] == "Deployment"}


def test_kubernetes_objects_are_well_formed() -> None:
    objects = kube_objects()
    assert objects
    for name, obj in objects:
        assert re.fullmatch(r"v1|[a-z0-9.]+/v\d\w*", str(obj.get("apiVersion"))), name
        assert isinstance(obj.get("kind"), str), name
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", obj["metadata"]["name"]), name
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "aios", name
    kustomization = load(KUBE / "kustomization.yaml")
    listed = set(kustomization["resources"])
    assert all((KUBE / r).is_file() for r in listed)
    assert "secret.example.yaml" not in listed  # placeholders are never applied
    assert {n for n, _ in objects} - listed == {"secret.example.yaml"}


def test_deployments_have_probes_resources_and_a_sigterm_grace() -> None:
    found = deployments()
    assert set(found) == {"aios-worker", "aios-memory-worker", "aios-serve"}
    for name, deployment in found.items():
        spec = deployment["spec"]
        labels = spec["template"]["metadata"]["labels"]
        assert spec["selector"]["matchLabels"].items() <= labels.items(), name
        pod = spec["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        (container,) = pod["containers"]
        for probe in ("readinessProbe", "livenessProbe"):
            assert {"exec", "httpGet"} & set(container[probe]), f"{name}: {probe}"
        resources = container["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]), name
        assert "memory" in resources["limits"], name
        assert {
            e.get("configMapRef", e.get("secretRef", {})).get("name") for e in container["envFrom"]
        } == {"aios-config", "aios-secrets"}
        assert container["image"] == "aios"  # kustomization's images: sets registry and tag
        if name != "aios-serve":
            grace = timedelta(seconds=pod["terminationGracePeriodSeconds"])
            assert grace > worker_shutdown_grace(), name
            assert container["readinessProbe"]["exec"]["command"][:2] == ["aios-probe", "worker"]
    assert deployments()["aios-worker"]["spec"]["template"]["spec"]["containers"][0]["args"] == [
        "worker",
        "--role",
        "general",
    ]
    memory = deployments()["aios-memory-worker"]["spec"]["template"]["spec"]["containers"][0]
    assert memory["args"] == ["worker", "--role", "memory"]
    assert memory["readinessProbe"]["exec"]["command"] == ["aios-probe", "worker", "--memory"]


def test_the_serve_service_reaches_the_console_port() -> None:
    (service,) = [o for _, o in kube_objects() if o["kind"] == "Service"]
    serve = deployments()["aios-serve"]["spec"]["template"]
    assert service["spec"]["selector"].items() <= serve["metadata"]["labels"].items()
    (container,) = serve["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert service["spec"]["ports"][0]["targetPort"] in ports
    env = {e["name"]: e["value"] for e in container["env"]}
    assert int(env["AIOS_SERVE_PORT"]) == ports["http"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/signin"


def test_configmap_and_secret_example_make_valid_settings() -> None:
    objects = {o["kind"]: o for _, o in kube_objects() if o["kind"] in ("ConfigMap", "Secret")}
    config = objects["ConfigMap"]["data"]
    secret = objects["Secret"]["stringData"]
    assert not set(config) & secret_settings(), "secrets belong in the Secret"
    assert set(config) | set(secret) <= setting_names()
    assert all("<" in v for v in secret.values())  # placeholders only
    text = (KUBE / "secret.example.yaml").read_text()
    assert secret_settings() <= set(secret) | set(re.findall(r"#\s*(AIOS_\w+):", text))
    filled = {
        "AIOS_DATABASE_URL": "postgresql://aios:pw@db.example.internal:5432/aios",
        "AIOS_SERVE_SECRET_KEY": "k" * 43,
        "AIOS_OPERATOR_TOKEN": "t" * 43,
    }
    assert set(filled) == set(secret)
    settings = settings_from({**config, **filled})
    assert settings.temporal_address == "temporal-frontend.temporal.svc:7233"
    assert settings.console_url == "https://aios.example.com"


def test_temporal_helm_values_use_external_postgres_and_the_aios_namespace() -> None:
    values = load(KUBE / "temporal-values.yaml")
    persistence = values["server"]["config"]["persistence"]
    for store, database in (("default", "temporal"), ("visibility", "temporal_visibility")):
        sql = persistence["datastores"][store]["sql"]
        assert sql["pluginName"] == "postgres12" and sql["databaseName"] == database
        assert "password" not in sql and sql["existingSecret"]
    namespaces = values["server"]["config"]["namespaces"]
    assert namespaces["create"] is True
    assert [n["name"] for n in namespaces["namespace"]] == ["aios"]
    job = yaml.safe_load(re.sub(r"\{\{[^}]*\}\}", "x", values["extraObjects"][0]))
    assert job["kind"] == "Job"
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"


# --- the image -------------------------------------------------------------------------------


def test_dockerfile_copies_existing_files_and_runs_as_a_user() -> None:
    lines = dockerfile_lines()
    for line in lines:
        if line.startswith("COPY ") and "--from=" not in line:
            *sources, _ = [p for p in shlex.split(line[5:]) if not p.startswith("--")]
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
        assert not re.search(r"(?i)^(ENV|ARG)\s.*(secret|password|token|api_key)", line), line
    final = lines[max(i for i, line in enumerate(lines) if line.startswith("FROM ")) :]
    assert final[0].startswith("FROM python:3.11-slim")
    users = [line for line in final if line.startswith("USER ")]
    assert users and not users[-1].split()[1].startswith(("0", "root"))
    assert lines[-2:] == ['ENTRYPOINT ["aios"]', 'CMD ["worker"]']
    # The .dockerignore next to the Dockerfile lets through what it copies.
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text()
    for source in ("requirements.lock", "pyproject.toml", "README.md", "src/", "deploy/probe.py"):
        assert f"!{source}" in ignore


def test_the_image_installs_the_runtime_closure_pinned_by_the_lock() -> None:
    from importlib.metadata import distribution

    (install,) = [line for line in dockerfile_lines() if "pip install" in line]
    assert "-c requirements.lock ." in install and "-r " not in install and "[dev]" not in install
    lock = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        name, _, version = line.partition("==")
        lock[re.sub(r"[-_.]+", "-", name).lower()] = version

    # What `pip install .` pulls in: pyproject's dependencies and theirs (with their extras).
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    closure: set[str] = set()
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [Requirement(r) for r in project["dependencies"]]
    while todo:
        requirement = todo.pop()
        name = re.sub(r"[-_.]+", "-", requirement.name).lower()
        if (name, frozenset(requirement.extras)) in seen:
            continue
        seen.add((name, frozenset(requirement.extras)))
        closure.add(name)
        dist = distribution(requirement.name)
        assert name in lock, f"{name} is installed in the image but not pinned in the lock"
        assert dist.version == lock[name], f"{name}: {dist.version} here, {lock[name]} locked"
        for sub in dist.requires or []:
            parsed = Requirement(sub)
            extras = requirement.extras or {""}
            if parsed.marker and not any(parsed.marker.evaluate({"extra": e}) for e in extras):
                continue  # an extra not asked for, or another platform's
            todo.append(parsed)
    assert "temporalio" in closure and "fastapi" in closure
    assert not closure & DEV_ONLY, f"dev tools in the image: {closure & DEV_ONLY}"


# --- the worker, as compose starts it ------------------------------------------------------------


def worker_shutdown_grace() -> timedelta:
    """How long a worker takes to finish in-flight activities on SIGTERM (its own setting)."""
    grace = getattr(Settings(_env_file=None), "worker_shutdown_grace", None)
    return grace if isinstance(grace, timedelta) else timedelta(seconds=30)


def on_this_machine(
    env: dict[str, str],
    temporal: DevServerConfig,
    database_url: str,
    smtp: RecordingSmtp,
    state: Path,
) -> dict[str, str]:
    """The container's environment with the stack's hosts swapped for this machine's: Temporal,
    PostgreSQL and SMTP are the tests' own. No Qdrant server runs here, so AIOS_QDRANT_URL is
    dropped and memory uses the embedded engine in ``state``; nothing else changes."""
    assert env["AIOS_TEMPORAL_ADDRESS"] == "temporal:7233"
    assert "@postgres:5432/" in env["AIOS_DATABASE_URL"]
    swapped = dict(env)
    swapped.update(
        AIOS_TEMPORAL_ADDRESS=temporal.address,
        AIOS_DATABASE_URL=database_url,
        AIOS_SMTP_HOST="127.0.0.1",
        AIOS_SMTP_PORT=str(smtp.port),
        AIOS_SMTP_SECURITY="none",
        AIOS_STATE_DIR=str(state),
    )
    del swapped["AIOS_QDRANT_URL"]
    base = {k: v for k, v in os.environ.items() if not k.startswith("AIOS_")}
    return {**base, **swapped, "PATH": f"{BIN}:{os.environ['PATH']}"}


def tail(folder: Path, service: str) -> str:
    return (folder / f"{service}.log").read_text(errors="replace")[-3000:]


async def probe(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``aios-probe ARGS`` as the healthcheck runs it."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(DEPLOY / "probe.py"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_workers_and_console_run_with_the_environment_compose_gives_them(
    own_temporal: DevServerConfig,
    database_url: str,
    smtp: RecordingSmtp,
    made_env: Path,
    tmp_path: Path,
) -> None:
    services = compose()["services"]
    envs = {
        service: on_this_machine(
            container_env(service, made_env), own_temporal, database_url, smtp, tmp_path
        )
        for service in AIOS_SERVICES
    }
    envs["serve"]["AIOS_SERVE_PORT"] = str(free_port())  # 8780 may be taken on this machine
    before = await probe(envs["worker"], "worker")
    assert before.returncode == 1
    assert "no worker on" in before.stderr and "'aios'" in before.stderr
    before = await probe(envs["serve"], "serve")
    assert before.returncode == 1 and "does not answer" in before.stderr

    started: list[tuple[str, asyncio.subprocess.Process]] = []
    try:
        for service in AIOS_SERVICES:  # in compose's start order
            with (tmp_path / f"{service}.log").open("wb") as log:
                proc = await asyncio.create_subprocess_exec(
                    str(BIN / "aios"),
                    *services[service]["command"],
                    env=envs[service],
                    cwd=tmp_path,
                    stdout=log,
                    stderr=log,
                )
            started.append((service, proc))
            check = services[service]["healthcheck"]["test"]
            assert check[:2] == ["CMD", "aios-probe"]
            async with asyncio.timeout(90):
                while (await probe(envs[service], *check[2:])).returncode != 0:
                    assert proc.returncode is None, f"{service} exited: {tail(tmp_path, service)}"
                    await asyncio.sleep(0.5)
        for _, proc in reversed(started):  # SIGTERM, as `docker compose stop` sends it
            proc.send_signal(signal.SIGTERM)
        for service, proc in started:
            await asyncio.wait_for(proc.wait(), timeout=60)
            if service == "serve":  # uvicorn shuts down, then re-raises the signal it got
                assert "Application shutdown complete" in tail(tmp_path, service)
                assert proc.returncode in (0, -signal.SIGTERM), tail(tmp_path, service)
            else:
                assert proc.returncode == 0, tail(tmp_path, service)
                assert '"worker stopped"' in tail(tmp_path, service)
    finally:
        for _, proc in started:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
