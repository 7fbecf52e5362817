"""Connector types are plug-ins: a package outside the source tree adds one through its entry points, the hub
loads it from configuration (options, webhooks, reads), and the public contract suite passes on it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from hub import registry
from hub.bootstrap import bootstrap
from hub.cli import app as cli
from hub.config import load_settings
from hub.core.errors import ConfigError
from hub.core.signing import sign_standard
from hub.http.app import create_app
from hub.plugins import build_connector
from hub.store.migrate import upgrade
from hub.usecases.process import process_event

EXAMPLE = Path(__file__).resolve().parent.parent / "plugin_example"
ROOT = EXAMPLE.parent.parent
SECRET = "desk-webhook-secret"
MAPPING = """[system]
rank = 50

[fields."customer.name"]
field = "customer"
owner = true
direction = "both"

[fields."fault.description"]
field = "problem"
owner = true
direction = "both"
"""


@pytest.fixture
def installed(tmp_path: Path) -> Iterator[Path]:
    """The example package copied outside the source tree and put on the path with its dist-info, as
    `pip install` would leave it; the hub's registry looks for entry points again."""
    site = tmp_path / "site-packages"
    shutil.copytree(EXAMPLE, site, ignore=shutil.ignore_patterns("tests", "README.md", "__pycache__"))
    sys.path.insert(0, str(site))
    registry.refresh()
    yield site
    sys.path.remove(str(site))
    for name in [m for m in sys.modules if m == "acme_desk" or m.startswith("acme_desk.")]:
        del sys.modules[name]
    registry.refresh()


def _config(tmp_path: Path, region: str = "apac") -> Path:
    mappings = tmp_path / "mappings"
    mappings.mkdir(exist_ok=True)
    (mappings / "desk.toml").write_text(MAPPING)
    config = tmp_path / "tickethub.toml"
    config.write_text(f'[hub]\ndatabase_url = "sqlite:///{tmp_path / "hub.db"}"\nmappings_dir = "mappings"\n\n'
                      '[systems.desk]\ntype = "acme"\norigin = true\nbase_url = "http://acme.test"\n'
                      f'region = "{region}"\ncredentials_env = "DESK_TOKEN"\nwebhook_secrets_env = "DESK_SECRETS"\n')
    return config


def test_the_hub_finds_the_type_through_its_entry_point_and_checks_its_options(installed: Path,
                                                                               tmp_path: Path) -> None:
    """The installed type is known by name, its own key is validated, and a wrong value names key and choices."""
    assert "acme" in registry.connector_types()
    settings = load_settings(_config(tmp_path), environ={})
    assert settings.systems["desk"].options.region == "apac"
    with pytest.raises(ConfigError) as wrong:
        load_settings(_config(tmp_path, region="mars"), environ={})
    assert "systems.desk.region" in str(wrong.value) and "'eu'" in str(wrong.value)

    result = CliRunner().invoke(cli, ["--config", str(_config(tmp_path)), "mappings", "check"])
    assert result.exit_code == 0, result.output
    assert "desk" in result.output and "no problems" in result.output


def test_a_type_that_is_not_installed_is_refused_with_the_known_ones(tmp_path: Path) -> None:
    """Without the package, configuration naming its type stops the hub with the types it does know."""
    with pytest.raises(ConfigError) as unknown:
        load_settings(_config(tmp_path), environ={})
    assert "unknown connector type `acme`" in str(unknown.value) and "generic" in str(unknown.value)


def test_a_signed_webhook_from_the_plugin_system_opens_a_ticket_read_through_its_connector(
        installed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Over HTTP: the type's notice parser refuses a bad payload (422); a good one is stored (202), and
    processing reads the record through the plug-in's connector and opens a ticket with its values."""
    from acme_desk.twin import AcmeTwin

    monkeypatch.setenv("DESK_TOKEN", "token-1")
    monkeypatch.setenv("DESK_SECRETS", SECRET)
    hub = bootstrap(load_settings(_config(tmp_path)))
    upgrade(hub.engine)
    twin = AcmeTwin("token-1", user="agent@acme.example")
    client = httpx.Client(transport=twin.transport())
    desk = build_connector("desk", hub.settings, {"desk": [SECRET]}, client, {"desk": "token-1"})
    from hub.core.ports import WriteRequest

    created = desk.create(WriteRequest(1, "-", "desk", None, {"customer": "Ada", "problem": "Pump jams"}, 1))
    api = TestClient(create_app(hub, "api-token"))

    def post(payload: object, msg_id: str) -> httpx.Response:
        body = json.dumps(payload)
        stamp = int(time.time())
        return api.post("/webhooks/desk", content=body, headers={
            "content-type": "application/json", "webhook-id": msg_id, "webhook-timestamp": str(stamp),
            "webhook-signature": sign_standard(SECRET, msg_id, stamp, body)})

    refused = post({"case": "not an acme notice"}, "n-0")
    assert refused.status_code == 422 and "`ticket`" in refused.json()["detail"]
    accepted = post({"ticket": created.local_id, "changed_at": "2026-12-04T09:00:00Z"}, "n-1")
    assert accepted.status_code == 202, accepted.text

    processed = process_event(hub, accepted.json()["event_id"], lambda _system: desk)
    assert processed.state == "processed" and processed.created
    ticket = api.get(f"/tickets/{processed.ticket_id}", headers={"Authorization": "Bearer api-token"}).json()
    assert ticket["fields"]["fault.description"]["value"] == "Pump jams"
    assert ticket["fields"]["customer.name"]["provenance"]["author"] == "agent@acme.example"


def test_the_public_contract_suite_passes_on_the_plugin_and_its_twin(installed: Path) -> None:
    """The package's own test, subclassing connectors.testing.ConnectorContract, passes as its author runs it."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(installed), str(ROOT)])}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir",
                          str(installed), str(EXAMPLE / "tests")], capture_output=True, text=True, env=env,
                         cwd=installed, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert " passed" in run.stdout and "failed" not in run.stdout
