"""The CRM role on BottleCRM through the hub, with the sandbox twin as the CRM: cases become tickets,
customer changes reach subscribers, the hub's own writes do not come back, non-owners are caught."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from connectors.bottlecrm.connector import BottleCRMConnector
from connectors.bottlecrm.twin import BottleCRMTwin
from hub.bootstrap import Hub, bootstrap
from hub.config import load_settings
from hub.core.ports import WriteRequest
from hub.http.app import create_app
from hub.mapping_files import DEFAULT_DIR
from hub.usecases.deliver import deliver_once
from hub.usecases.process import process_event
from tests.fakes import RecordingWriter

HUB_USER, AGENT = "tickethub@example.com", "agent@example.com"
EVENTS = ["ticket.created", "ticket.updated", "contact.created", "contact.updated"]


@dataclass
class World:
    hub: Hub
    twin: BottleCRMTwin
    crm: BottleCRMConnector
    wms: RecordingWriter
    api: TestClient
    mes: RecordingWriter = field(default_factory=lambda: RecordingWriter("mes"))

    def connector_for(self, system: str):  # type: ignore[no-untyped-def]
        return {"crm": self.crm, "wms": self.wms, "mes": self.mes}[system]

    def process_all(self) -> list[str]:
        """Process every received event, as the workers would; the tickets touched."""
        with self.hub.store.unit_of_work() as uow:
            pending = uow.deliveries.take_undispatched_events(self.hub.clock(), 1000)
            uow.commit()
        return [t for e in pending if (t := process_event(self.hub, e, self.connector_for).ticket_id)]

    def deliver_all(self) -> None:
        with self.hub.store.unit_of_work() as uow:
            ids = [d["id"] for d in uow.deliveries.find("pending", limit=1000)]
        for delivery_id in sorted(ids):
            deliver_once(self.hub, delivery_id, self.connector_for)

    def history(self, ticket_id: str) -> list:  # type: ignore[type-arg]
        with self.hub.store.unit_of_work() as uow:
            return uow.tickets.history(ticket_id)


def _world(engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crm_owns_fault: bool = True) -> World:
    maps = tmp_path / "maps"
    shutil.copytree(DEFAULT_DIR, maps, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    # a MES that takes the diagnosis; in one deployment it owns it, and the CRM may not change it
    (maps / "mes.toml").write_text(f"""[system]
rank = 30
[fields."fault.description"]
field = "production.notes"
{'direction = "write"' if crm_owns_fault else 'owner = true'}
[fields."production.progress"]
field = "production.percent_done"
owner = true
""")
    if not crm_owns_fault:
        text = (maps / "bottlecrm.toml").read_text()
        (maps / "bottlecrm.toml").write_text(text.replace('field = "case.description"\nowner = true',
                                                          'field = "case.description"\ndirection = "write"'))
    config = tmp_path / "tickethub.toml"
    config.write_text(f"""[hub]
mappings_dir = "{maps}"
[systems.crm]
type = "bottlecrm"
mapping = "bottlecrm"
origin = true
base_url = "http://bottlecrm.sandbox"
credentials_env = "CRM_PAT"
webhook_secrets_env = "CRM_HOOK"
hub_author = "{HUB_USER}"
[systems.wms]
base_url = "http://wms.test/"
webhook_secrets_env = "WMS_HOOK"
[systems.mes]
base_url = "http://mes.test/"
webhook_secrets_env = "WMS_HOOK"
""")
    settings = load_settings(config, environ={})
    hub = bootstrap(settings, engine=engine)
    holder: dict[str, TestClient] = {}

    def to_hub(request: httpx.Request) -> httpx.Response:
        answer = holder["api"].post(request.url.path, content=request.content, headers=dict(request.headers))
        return httpx.Response(answer.status_code, content=answer.content)

    twin = BottleCRMTwin(httpx.Client(transport=httpx.MockTransport(to_hub)), deliver="inline")
    hub_pat = twin.add_user(HUB_USER)
    twin.add_user(AGENT)
    secret = twin.register_webhook("http://hub.test/webhooks/crm", EVENTS)
    api = TestClient(create_app(hub, "token", {"crm": [secret], "wms": ["whsec_d21z"]}))
    holder["api"] = api
    crm = BottleCRMConnector("crm", "http://bottlecrm.sandbox", hub_pat, twin.http_client())
    return World(hub, twin, crm, RecordingWriter("wms"), api)


@pytest.fixture
def world(engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    made = _world(engine, tmp_path, monkeypatch)
    yield made
    made.twin.close()


def _open_case(world: World) -> tuple[str, str]:
    contact = world.twin.create_contact(AGENT, first_name="Ada", last_name="Lovelace", phone="+44 20 7946 0000",
                                        email="ada@example.com")
    case = world.twin.create_case(AGENT, name="Crank jams", status="New", priority="High",
                                  description="Crank jams at column 4", contacts=[contact])
    [ticket_id] = set(world.process_all())
    return case, ticket_id


def test_a_case_opened_in_the_crm_becomes_a_ticket(world: World) -> None:
    """A new BottleCRM case reaches the hub by webhook and gets a global ticket ID, with its customer."""
    case, ticket_id = _open_case(world)
    with world.hub.store.unit_of_work() as uow:
        assert uow.tickets.find_by_xref("crm", case) == ticket_id
        view = uow.tickets.get(ticket_id)
    assert view.fields["customer.name"].value == "Ada Lovelace"
    assert view.fields["status"].value == "new"
    assert view.fields["fault.description"].value == "Crank jams at column 4"
    assert view.fields["status"].provenance.author == AGENT


def test_a_phone_changed_in_the_crm_reaches_the_subscribed_wms(world: World) -> None:
    """A contact's new phone in BottleCRM is applied and written to the WMS in its own field name."""
    case, ticket_id = _open_case(world)
    world.deliver_all()
    contact_id = next(iter(world.twin.contacts))
    world.twin.edit_contact(contact_id, AGENT, phone="+44 20 7946 0999")
    assert ticket_id in world.process_all()
    world.deliver_all()
    assert world.wms.writes[-1].fields.get("shipment.recipient_phone") == "+44 20 7946 0999"


def test_the_hubs_own_write_into_the_crm_does_not_come_back(
        engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the MES owns the diagnosis, the hub writing it into BottleCRM hears the webhook that write
    fires as an echo, not a change; the fields BottleCRM owns, unchanged, are part of the echo too."""
    world = _world(engine, tmp_path, monkeypatch, crm_owns_fault=False)
    try:
        case, ticket_id = _open_case(world)
        seen = len(world.history(ticket_id))
        result = world.crm.write(WriteRequest(1, ticket_id, "crm", case, {"case.description": "Worn crank"}, 1))
        assert result.status_code == 200
        world.process_all()
        after = world.history(ticket_id)[seen:]
        assert after and {h.outcome for h in after} == {"echo"}
        assert {h.author for h in after} == {HUB_USER}
        assert "fault.description" in {h.field for h in after}
        with world.hub.store.unit_of_work() as uow:
            assert "fault.description" not in uow.tickets.get(ticket_id).fields  # its own echo changes nothing
    finally:
        world.twin.close()


def test_an_edit_made_just_before_the_hubs_write_is_not_lost_in_its_echo(world: World) -> None:
    """BottleCRM reports the hub's write with the hub as author; a field BottleCRM owns that changed since the
    hub last heard is someone's edit made just before, and is applied, not swallowed as echo."""
    case, ticket_id = _open_case(world)
    world.twin.edit_case(case, AGENT, notify=False, status="Assigned")  # its webhook is lost
    result = world.crm.write(WriteRequest(1, ticket_id, "crm", case, {"case.description": "Crank jams"}, 1))
    assert result.status_code == 200
    world.process_all()
    with world.hub.store.unit_of_work() as uow:
        assert uow.tickets.get(ticket_id).fields["status"].value == "assigned"


def test_a_crm_edit_of_a_field_it_does_not_own_is_rejected_with_its_author(
        engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the MES owns the diagnosis, an agent editing it in BottleCRM is recorded as not_owner, by name."""
    world = _world(engine, tmp_path, monkeypatch, crm_owns_fault=False)
    try:
        case = world.twin.create_case(AGENT, name="Crank jams", status="New", priority="High")
        [ticket_id] = set(world.process_all())
        world.twin.edit_case(case, "agent@example.com", description="It is the crank, obviously")
        world.process_all()
        rejected = [h for h in world.history(ticket_id) if h.outcome == "not_owner"]
        assert [(h.field, h.author, h.new_value) for h in rejected] == [
            ("fault.description", AGENT, "It is the crank, obviously")]
        assert "owned by mes" in rejected[0].reason
    finally:
        world.twin.close()
