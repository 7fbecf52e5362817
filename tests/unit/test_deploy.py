"""deploy/ stays true to the hub: the example configuration (and the Kubernetes ConfigMap's) pass the same
checks as `tickethub mappings check`; every process is started with a command the CLI has; the probes and
health checks point at endpoints that exist; no secret value sits in a manifest a Deployment uses (they come
from the Secret by name); beat runs alone; the systemd units start what they say and restart on failure."""

from __future__ import annotations

import configparser
import re
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml

from hub.cli import app
from hub.config import load_settings
from hub.mapping_files import check_mappings
from hub.plugins import connector_schemas
from hub.workflow_files import check_workflow

pytestmark = pytest.mark.unit

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
COMMANDS = set(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


def _checked(config: Path) -> None:
    settings = load_settings(config, environ={})
    mapping_set, problems = check_mappings(settings.hub.mappings_dir, settings.mapping_names(),
                                           connector_schemas(settings))
    path = settings.workflow_path()
    assert path is not None
    problems += check_workflow(path, list(settings.systems))[1]
    assert problems == [] and mapping_set is not None


def _argv_ok(argv: list[str]) -> None:
    assert argv and argv[0] in COMMANDS, f"`tickethub {' '.join(argv)}`: the CLI has no command {argv[0]!r}"


def test_the_example_configuration_passes_the_checks() -> None:
    _checked(DEPLOY / "tickethub.example.toml")
    settings = load_settings(DEPLOY / "tickethub.example.toml", environ={})
    assert {s.type for s in settings.systems.values()} >= {"generic", "tryton", "kuaidi100"}
    assert settings.alerts.channels and settings.workflow.enabled


def test_compose_runs_every_role_with_real_commands_and_its_secrets_from_the_environment() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text(encoding="utf-8"))
    services: dict[str, Any] = compose["services"]
    hub_roles = {name: s for name, s in services.items() if s.get("image") == "tickethub:latest"}
    assert set(hub_roles) == {"migrate", "api", "worker-events", "worker-deliveries", "beat"}
    for service in hub_roles.values():
        _argv_ok(service["command"])
    assert hub_roles["migrate"]["command"] == ["db", "upgrade"]
    assert "/healthz" in " ".join(hub_roles["api"]["healthcheck"]["test"])
    assert {"postgres", "rabbitmq"} <= set(services) and services["flower"]["profiles"] == ["flower"]
    text = (DEPLOY / "docker-compose.yml").read_text(encoding="utf-8")
    assert "change-me" not in text and re.search(r"PASSWORD:\?", text)  # every password from .env, required
    for role in ("api", "worker-events", "worker-deliveries", "beat"):
        assert hub_roles[role]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def _manifests() -> list[dict[str, Any]]:
    docs = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    return docs


def test_kubernetes_probes_one_beat_secrets_by_name_and_a_configmap_that_checks(tmp_path: Path) -> None:
    docs = _manifests()
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert {("Deployment", "tickethub-api"), ("Service", "tickethub-api"), ("Deployment", "tickethub-beat"),
            ("Deployment", "tickethub-worker-events"), ("Deployment", "tickethub-worker-deliveries"),
            ("Job", "tickethub-migrate"), ("ConfigMap", "tickethub-config"), ("Secret", "tickethub-secrets")} <= kinds
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] in ("Deployment", "Job")}
    for name, d in deployments.items():
        [container] = d["spec"]["template"]["spec"]["containers"]
        _argv_ok(container["args"])
        assert container["envFrom"] == [{"secretRef": {"name": "tickethub-secrets"}}], name
        assert "env" not in container, f"{name}: secrets come from the Secret by name, not as values"
    api = deployments["tickethub-api"]["spec"]["template"]["spec"]["containers"][0]
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    beat = deployments["tickethub-beat"]["spec"]
    assert beat["replicas"] == 1 and beat["strategy"]["type"] == "Recreate"
    assert deployments["tickethub-migrate"]["spec"]["template"]["spec"]["containers"][0]["args"] == ["db", "upgrade"]
    [config] = [d for d in docs if d["kind"] == "ConfigMap"]
    path = tmp_path / "tickethub.toml"
    path.write_text(config["data"]["tickethub.toml"], encoding="utf-8")
    _checked(path)


def test_systemd_units_start_real_commands_and_restart_on_failure() -> None:
    units = sorted((DEPLOY / "systemd").glob("*.service"))
    assert {u.name for u in units} == {"tickethub-api.service", "tickethub-beat.service",
                                       "tickethub-migrate.service", "tickethub-worker@.service"}
    for unit in units:
        parser = configparser.ConfigParser(interpolation=None, strict=False)
        parser.read_string(unit.read_text(encoding="utf-8"))
        service = parser["Service"]
        assert service["EnvironmentFile"] == "/etc/tickethub/tickethub.env" and service["User"] == "tickethub"
        for argv in re.findall(r"/opt/tickethub/bin/tickethub ([^;']+)", service["ExecStart"]):
            _argv_ok(argv.split())
        if service.get("Type") != "oneshot":
            assert service["Restart"] == "on-failure", unit.name
    target = (DEPLOY / "systemd" / "tickethub.target").read_text(encoding="utf-8")
    assert "tickethub-worker@deliveries.service" in target and "tickethub-beat.service" in target
